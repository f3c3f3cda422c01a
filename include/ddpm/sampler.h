// Sampling: the reverse chain from pure noise x_T to an image x_0, as small functions over an
// EpsilonPredictor (the UNet, or a closed-form model in tests). Three samplers, chosen by SamplerKind:
//   - DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), sigma_t^2 = beta_t or beta~_t;
//   - respaced DDPM (Nichol & Dhariwal 2021, improved-diffusion's respace.py) when steps < T;
//   - DDIM (Song et al. 2020, eq. 12), deterministic for eta = 0, skipping timesteps.
// Timesteps are 0-based (see schedule.h): the model is always called with indices of the
// original T-step schedule. All per-step coefficients come from the float64 ScheduleTable.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ddpm/config.h"
#include "ddpm/loss.h"
#include "ddpm/schedule.h"

namespace ddpm {

enum class SamplerKind { ddpm, ddim };

// "ddpm" or "ddim"; anything else throws ddpm::Error (config, key sample.sampler) listing them.
SamplerKind sampler_from_name(const std::string& name);
std::string sampler_name(SamplerKind kind);

struct SamplerOptions {
  SamplerKind kind = SamplerKind::ddpm;
  int steps = 1000;                      // reverse steps; < T: respaced (DDPM) or skipping (DDIM)
  double eta = 0.0;                      // DDIM only: 0 deterministic, 1 DDPM-like noise
  std::string variance = "fixed_large";  // DDPM only: fixed_large (beta_t) | fixed_small (beta~_t)
  std::string spacing = "uniform";       // uniform | quadratic, see sampling_timesteps()
  bool clip_denoised = true;             // clip the predicted x0 to [-1, 1] at every step
};

SamplerOptions sampler_options(const SampleConfig& sample);

// Throws ddpm::Error (config, naming the sample.* key) unless 1 <= steps <= T, eta >= 0 and
// variance and spacing are known names. run_sampler() calls it.
void validate_sampler_options(const SamplerOptions& options, int64_t timesteps);

// The `steps` timesteps (0-based indices into the T-step schedule) the reverse chain visits,
// strictly increasing; the chain runs them from the last to the first. Requires 1 <= steps <= T.
//   uniform:   S_i = floor(i (T-1) / (steps-1) + 1/2), i = 0 .. steps-1: evenly spaced from 0 to
//              T-1 inclusive, as improved-diffusion's space_timesteps(T, [steps]), but in exact
//              integer arithmetic with halves rounded up (Python's round() takes the even one).
//   quadratic: S_i = floor(0.8 T (i / (steps-1))^2), DDIM's
//              (linspace(0, sqrt(0.8 T), steps) ** 2).astype(int) in exact integer arithmetic,
//              then made strictly increasing by S_i = max(S_i, S_{i-1} + 1) (the early values
//              crowd together); the result stays <= T-1 for any steps <= T, and steps == T gives
//              every timestep.
//   leading:   S_i = i floor(T / steps), diffusers' default ("leading", steps_offset 0): the chain
//              starts at T - T/steps (980 for 50 of 1000 steps), not T-1, and ends at 0;
//              steps == 1 gives {0}, as in diffusers.
//   trailing:  S_i = round((i+1) T / steps) - 1 (diffusers' "trailing"): the chain starts at
//              T-1 and ends at about T/steps - 1.
//   linspace:  S_i = round(i (T-1) / (steps-1)) (diffusers' "linspace"): uniform, but with
//              numpy's rounding (halves to even), and {0} for a single step.
// trailing and linspace repeat numpy's float64 arithmetic, so that they give diffusers'
// timesteps exactly, also where a value is a half (sampler.cpp). steps == T gives every
// timestep 0 .. T-1 for every spacing. A single step (steps == 1) is {T-1} for uniform,
// quadratic and trailing: one step must start from pure noise.
std::vector<int64_t> sampling_timesteps(int64_t timesteps, int steps, const std::string& spacing);

// The schedule that ancestral sampling runs on when it visits only `timesteps` (strictly
// increasing, as from sampling_timesteps): alpha_bar'_i = alpha_bar[S_i] and
// beta'_i = 1 - alpha_bar[S_i] / alpha_bar[S_{i-1}], with alpha_bar[S_{-1}] = 1.
NoiseSchedule respaced_schedule(const NoiseSchedule& schedule,
                                const std::vector<int64_t>& timesteps);

// Called after each reverse step with (step, total, the new x, the predicted x0 (clipped when
// clip_denoised)); step counts 0 .. total-1 in the order the chain runs, so step total-1 gives
// the final image.
using SamplerCallback =
    std::function<void(int step, int total, const torch::Tensor& x, const torch::Tensor& x0)>;

// Runs the reverse chain from x_T = noise ([B, C, H, W], float32, on the model's device) to x_0,
// which it returns (not clipped to [-1, 1]; the last step's value is the predicted x0 when
// clip_denoised). `noise_for_step(step)` returns the fresh standard-normal z (shaped like x) of a
// step; it is called once for each step that adds noise, in order: every DDPM step but the last,
// and every DDIM step but the last when eta > 0 (never when eta == 0). Runs without autograd.
torch::Tensor run_sampler(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const SamplerOptions& options, torch::Tensor x_T,
                          const std::function<torch::Tensor(int step)>& noise_for_step,
                          const SamplerCallback& callback = {});

// The seed of image `index` of a run seeded with `seed`: splitmix64(splitmix64(seed) + index).
uint64_t image_seed(uint64_t seed, int64_t index);

// Samples images first_index .. first_index + count - 1 ([count, C, H, W] float32 on `device`)
// so that image k is the same whatever batch it is generated in: its x_T and then every step's
// z are drawn, in that order, from its own CPU generator seeded with image_seed(seed, k), then
// moved to `device`. Bit-identical across batch splits as long as the model's output for one image
// does not depend on its batch (convolution kernels chosen by batch size may change last bits).
// A given `x_T` ([count, C, H, W], float32) replaces the drawn x_T; every step's z is still drawn
// as above, so passing the x_T the generators would draw changes nothing.
torch::Tensor sample_images(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const SamplerOptions& options, int64_t first_index, int64_t count,
                            std::vector<int64_t> image_shape, uint64_t seed, torch::Device device,
                            const SamplerCallback& callback = {},
                            const torch::Tensor& x_T = {});

}  // namespace ddpm
