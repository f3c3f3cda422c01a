// What the network predicts (diffusion.prediction), and the conversions between its output and
// eps, which the samplers use. With x_t = a x0 + s eps, a = sqrt(alpha_bar_t), s = sqrt(1 -
// alpha_bar_t), a^2 + s^2 = 1:
//   - eps: the noise (Ho et al. 2020), the default;
//   - x0:  the clean image ("sample" in diffusers);
//   - v:   the velocity v = a eps - s x0 (Salimans & Ho 2022, "v_prediction" in diffusers);
//          then eps = s x_t + a v and x0 = a x_t - s v.
// Min-SNR-gamma weighting (Hang et al. 2023) weights each example's loss so that, written as an
// error in x0, its weight is min(SNR_t, gamma) with SNR_t = a^2 / s^2. Since
// ||eps - eps^||^2 = SNR ||x0 - x0^||^2 and ||v - v^||^2 = (SNR + 1) ||x0 - x0^||^2, the weight
// of the prediction's own squared error is min(SNR, gamma) / SNR for eps, min(SNR, gamma) for x0
// and min(SNR, gamma) / (SNR + 1) for v.
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/choices.h"

namespace ddpm {

// A network's output split into its prediction (diffusion.prediction) and, for a
// model.learn_variance model, the variance output v (undefined otherwise).
struct ModelOutput {
  torch::Tensor prediction;
  torch::Tensor variance;
};
// `output` of an image with `channels` channels: [B, channels, ...] or [B, 2 x channels, ...].
ModelOutput split_output(const torch::Tensor& output, int64_t channels);

// The training target for x0 and eps; sqrt_alpha_bar and sqrt_one_minus_alpha_bar broadcast
// against them (per-example [B, 1, 1, 1] or scalars).
torch::Tensor prediction_target(Prediction prediction, const torch::Tensor& x0,
                                const torch::Tensor& eps, const torch::Tensor& sqrt_alpha_bar,
                                const torch::Tensor& sqrt_one_minus_alpha_bar);

// eps from the network's output at x_t, all at one alpha_bar (a sampler's grid point).
torch::Tensor eps_from_prediction(Prediction prediction, const torch::Tensor& output,
                                  const torch::Tensor& x_t, double alpha_bar);

// The min-SNR-gamma weight of the prediction's squared error, for SNR values `snr` (any shape).
torch::Tensor min_snr_weight(Prediction prediction, const torch::Tensor& snr, double gamma);

}  // namespace ddpm
