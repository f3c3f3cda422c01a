// Sampling: the reverse chain from pure noise x_T to an image x_0, over an EpsilonPredictor (the
// UNet, or a closed-form model in tests). One loop (run_sampler) runs any solver of
// src/diffusion/solvers/ over the TimestepGrid that sample.spacing gives (timestep_grid.h):
//   - ddpm: ancestral sampling (Ho et al. 2020, Algorithm 2), sigma_t^2 = beta_t, beta~_t or
//     the learned variance (Nichol & Dhariwal 2021, between the two), respaced (improved-
//     diffusion's respace.py: beta and beta~ of the respaced chain) when steps < T; the other
//     samplers use a learned-variance model's mean alone;
//   - ddim: DDIM (Song et al. 2020, eq. 12), deterministic for eta = 0;
//   - euler, euler_ancestral, heun: the sigma-space samplers of Karras et al. 2022;
//   - dpmpp_2m, dpmpp_2m_sde: DPM-Solver++(2M) and its SDE variant (Lu et al. 2022b).
// image_chains.h runs it per image (each image's generator, where its chain starts).
// sampler_kind.h lists each with its order and cost. Timesteps are 0-based (see schedule.h):
// the model is always called with timesteps of the original T-step schedule (fractional ones
// for some sigma-space spacings). All per-step coefficients are computed in float64.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "config/sampler_kind.h"
#include "diffusion/loss.h"
#include "diffusion/prediction.h"
#include "diffusion/schedule.h"
#include "diffusion/timestep_grid.h"

namespace ddpm {

struct SamplerOptions {
  SamplerKind kind = SamplerKind::ddpm;
  int steps = 1000;                      // reverse steps; < T: respaced (DDPM) or skipping
  double eta = 0.0;                      // DDIM only: 0 deterministic, 1 DDPM-like noise
  Variance variance = Variance::fixed_large;  // DDPM only: beta_t, or the posterior's beta~_t
  Spacing spacing = Spacing::uniform;          // see timestep_grid()
  bool clip_denoised = true;             // clip every predicted x0 to [-1, 1]
  // What the model returns (diffusion.prediction); run_sampler converts it to eps at each
  // grid point's alpha_bar, so every sampler works with every prediction type.
  Prediction prediction = Prediction::eps;
};

SamplerOptions sampler_options(const SampleConfig& sample, const DiffusionConfig& diffusion);

// Throws ddpm::Error (config, naming the sample.* key) unless the steps fit the grid (see
// timestep_grid()), eta >= 0 (and 0 for every sampler but ddim), and the spacing suits the
// sampler (karras: sigma-space ones). run_sampler() calls it.
void validate_sampler_options(const SamplerOptions& options, int64_t timesteps);

// The network at point `point` of `grid`: one call of `model` at the point's timestep (float32
// when the grid is fractional, else int64), its prediction converted from `prediction` to eps
// at the point's alpha_bar, and the variance output v of a model.learn_variance model
// (undefined otherwise).
struct GridOutput {
  torch::Tensor eps, variance;
};
GridOutput grid_output(const EpsilonPredictor& model, const TimestepGrid& grid,
                       Prediction prediction, const torch::Tensor& x, int point);
// Its eps alone.
torch::Tensor grid_eps(const EpsilonPredictor& model, const TimestepGrid& grid,
                       Prediction prediction, const torch::Tensor& x, int point);

// Called after each reverse step with (step, total, the new x, the predicted x0 (clipped when
// clip_denoised)); step counts 0 .. total-1 in the order the chain runs, so step total-1 gives
// the final image.
using SamplerCallback =
    std::function<void(int step, int total, const torch::Tensor& x, const torch::Tensor& x0)>;

// Runs the reverse chain from x_T = noise ([B, C, H, W], float32 or float64, on the model's
// device) to x_0, which it returns (not clipped to [-1, 1]; every sampler's last step returns its
// predicted x0, clipped when clip_denoised). `noise_for_step(step)` returns the fresh
// standard-normal z (shaped like x) of a step; it is called once for each step that adds noise,
// in order: every step but the last of ddpm, euler_ancestral and dpmpp_2m_sde, and of ddim when
// eta > 0; never for the deterministic samplers. Makes sampler_evaluations() model calls. Runs
// without autograd.
torch::Tensor run_sampler(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const SamplerOptions& options, torch::Tensor x_T,
                          const std::function<torch::Tensor(int step)>& noise_for_step,
                          const SamplerCallback& callback = {});

// Image-to-image (SDEdit, Meng et al. 2022): the chain of `options` run from its grid point
// `first_step` on, starting from x0 ([B, C, H, W], in [-1, 1]) noised to that point,
// x = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise. Steps count from first_step, as in
// run_sampler; the callback sees them as 0 .. steps - first_step - 1.
torch::Tensor run_sampler_from(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                               const SamplerOptions& options, int first_step,
                               const torch::Tensor& x0, const torch::Tensor& noise,
                               const std::function<torch::Tensor(int step)>& noise_for_step,
                               const SamplerCallback& callback = {});

// The first grid point of a chain of `steps` steps run at `strength` (0 < strength <= 1): the
// last floor(strength x steps) steps run, as in diffusers' image-to-image pipelines, so
// steps 50 at strength 0.4 runs 20. Throws ddpm::Error (usage, naming --strength) for a strength
// outside (0, 1] or one that runs no step.
int first_step_for_strength(int steps, double strength);

// The seed of image `index` of a run seeded with `seed`: splitmix64(splitmix64(seed) + index).
uint64_t image_seed(uint64_t seed, int64_t index);

}  // namespace ddpm
