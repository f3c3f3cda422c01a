// Inpainting with RePaint (Lugmayr et al. 2022): the reverse chain of an unconditional (or
// class-conditional) model, where at every step the known pixels come from the forward process
// of the input, q(x_{t-1} | x_0), and the unknown ones from the model's step; every
// jump_length steps the chain goes back up jump_length steps by the forward process and down
// again, jump_n_sample - 1 times, so that the generated region harmonises with the known one.
//
// The timesteps are diffusers' RePaintScheduler.set_timesteps list, so the same T, steps,
// jump_length and jump_n_sample visit the same timesteps. The model's step is the ddpm sampler's
// ancestral step (sample.variance) or ddim's (sample.eta) between consecutive timesteps of the
// list, for any prediction type. Going up from s to t draws x_t ~ q(x_t | x_s) in one jump,
// exact for any gap (diffusers applies the betas from t_last on, which is the same only when the
// steps are every timestep).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

#include "diffusion/loss.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

namespace ddpm {

struct RepaintOptions {
  int jump_length = 10;    // steps per jump back up (sample.jump_length)
  int jump_n_sample = 10;  // passes over each jump_length block (sample.jump_n_sample; 1: none)
};

// diffusers' RePaintScheduler.set_timesteps(steps, jump_length, jump_n_sample) for a T-step
// schedule: steps = min(steps, T); the indices steps-1 .. 0 going down one at a time, after each
// index j in {0, jump_length, 2 jump_length, ...} below steps - jump_length going back up
// jump_length indices (jump_n_sample - 1 times), every index times T / steps (integer
// division). Throws ddpm::Error (config) naming the key for steps, jump_length or
// jump_n_sample < 1.
std::vector<int64_t> repaint_timesteps(int64_t timesteps, int steps, int jump_length,
                                       int jump_n_sample);

// Throws ddpm::Error (config, naming sample.sampler) unless `kind` is ddpm or ddim, the samplers
// whose steps RePaint takes.
void require_repaint_sampler(SamplerKind kind);

// The network evaluations of a RePaint chain: its downward steps.
int repaint_evaluations(int64_t timesteps, int steps, int jump_length, int jump_n_sample);

// Inpaints from x_T ([B, C, H, W]) towards `known` (the input images, [B, C, H, W] in [-1, 1]),
// keeping the pixels where `mask` ([B, 1 or C, H, W]) is 1 and generating those where it is 0.
// options.kind must be ddpm or ddim (the samplers that step between schedule timesteps; throws
// ddpm::Error (config) naming sample.sampler otherwise); options.spacing is not used (the list is
// RePaint's). `noise_for_step(k)` gives the k-th fresh standard-normal draw, shaped like x,
// called in order: per downward step one for the unknown part when the step adds noise, then
// one for the known part (none at the last step); per upward jump one. `callback` sees every downward step, counted
// 0 .. repaint_evaluations() - 1. The last step's known pixels are `known` itself.
torch::Tensor run_repaint(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const SamplerOptions& options, const RepaintOptions& repaint,
                          torch::Tensor x_T, const torch::Tensor& known, const torch::Tensor& mask,
                          const std::function<torch::Tensor(int draw)>& noise_for_step,
                          const SamplerCallback& callback = {});

}  // namespace ddpm
