// The training objective. By default the simplified objective of DDPM (Ho et al. 2020, eq. 14):
// L_simple = E_{t, x0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t) ||^2
// with t uniform over 0 .. T-1 and eps ~ N(0, I); the network may instead predict x0 or v, and
// each example's error may carry the min-SNR-gamma weight (prediction.h). train.loss hybrid
// adds vlb_weight x T x L_t (L_hybrid of Nichol & Dhariwal 2021: L_t of likelihood.h in bits per
// dimension, T L_t being one-sample estimate of L_vlb, with the predicted mean frozen so that
// it only trains the variances), and vlb trains T x L_t alone (mean and, when learned,
// variances), as improved-diffusion's rescaled losses do.
#pragma once

#include <functional>

#include <torch/torch.h>

#include "diffusion/prediction.h"
#include "diffusion/schedule.h"

namespace ddpm {

// eps_theta(x_t, t): any noise predictor, the UNet or a stub in tests.
using EpsilonPredictor = std::function<torch::Tensor(const torch::Tensor& x_t,
                                                     const torch::Tensor& t)>;

// The noise and timesteps of one L_simple evaluation.
struct NoiseDraw {
  torch::Tensor t;    // [B] int64, uniform over 0 .. T-1 (or importance-sampled)
  torch::Tensor eps;  // shaped like x0, standard normal
  // [B] float32 weights of the examples' losses (importance sampling's 1 / (T p_t)); undefined:
  // every weight is 1.
  torch::Tensor weight = {};
};

// Which draws: example i of the batch is example first_example + i of training step `step`.
struct NoiseKey {
  uint64_t seed = 0;
  int64_t step = 0;
  int64_t first_example = 0;
};

// Each example draws its t and eps on the CPU from a generator of its own, seeded from
// (seed, step, example index): the draws do not depend on how a batch is split over processes,
// on the device, or on anything drawn before, so a resumed or re-sharded run draws the same.
NoiseDraw draw_noise(const torch::Tensor& x0, int64_t timesteps, const NoiseKey& key);
// The same draws for a batch of `sizes` ([B, C, H, W]), left on the CPU: float32 eps, in
// page-locked memory when `pinned` (for a non-blocking copy to a GPU).
NoiseDraw draw_noise_on_cpu(at::IntArrayRef sizes, int64_t timesteps, const NoiseKey& key,
                            bool pinned = false);

// Mean squared error between eps and eps_theta(x_t, t), averaged over every element.
torch::Tensor simple_loss(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const torch::Tensor& x0, const NoiseDraw& draw);

struct LossOptions {
  Prediction prediction = Prediction::eps;  // what `model` returns (diffusion.prediction)
  bool min_snr = false;                     // train.loss_weighting = min_snr
  double min_snr_gamma = 5.0;
  LossKind kind = LossKind::simple;         // train.loss
  double vlb_weight = 0.001;                // train.vlb_weight (hybrid)
  // The variances of L_vlb: learned for a model.learn_variance model, else sample.variance.
  Variance variance = Variance::fixed_large;
};

// Each example's loss ([B] float32): the squared error between the prediction target and the
// prediction part of model(x_t, t), averaged over the example's elements and weighted (min-SNR
// when asked, else 1), plus the L_vlb term of train.loss hybrid or vlb.
torch::Tensor example_losses(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                             const torch::Tensor& x0, const NoiseDraw& draw,
                             const LossOptions& options);

// The batch's loss: example_losses times draw.weight (when defined), averaged over the batch.
// With the defaults it is simple_loss.
torch::Tensor training_loss(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const torch::Tensor& x0, const NoiseDraw& draw,
                            const LossOptions& options);

}  // namespace ddpm
