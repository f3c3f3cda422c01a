// DDIM inversion (Song et al. 2020, section 4.3; diffusers' DDIMInverseScheduler): the
// deterministic DDIM chain (eta = 0) run upward, from images x_0 to the x_T that the DDIM sampler
// with the same grid maps back to them (up to the inversion's approximation, which vanishes as
// the steps grow: the model's output at the upper point of a step is taken at the lower one's x).
#pragma once

#include <torch/torch.h>

#include "diffusion/loss.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

namespace ddpm {

// x_T of `x0` ([B, C, H, W], float32 or float64, on the model's device) for the grid of
// `options` (options.kind must be ddim, options.eta 0: throws ddpm::Error (config) naming
// sample.sampler or sample.eta otherwise). Each step from grid point i + 1 up to point i (the
// clean image's alpha_bar = 1 first) calls the model at point i's timestep with x at point
// i + 1 (its output converted to eps at point i + 1's level, a'):
// x0 = (x - sqrt(1 - a') eps) / sqrt(a'), x = sqrt(a) x0 + sqrt(1 - a) eps, unclipped.
// `callback` sees the steps as 0 .. N - 1 in the order they run (the x0 argument is the
// prediction). Runs without autograd.
torch::Tensor invert_images(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const SamplerOptions& options, torch::Tensor x0,
                            const SamplerCallback& callback = {});

}  // namespace ddpm
