// Dynamic loss scaling; see loss_scaler.h.
#include "train/loss_scaler.h"

#include <ATen/ATen.h>

#include <cmath>

namespace ddpm {

LossScaler::LossScaler(const LossScalerOptions& options) : options_(options) {
  state_.scale = static_cast<float>(options.init_scale);
}

torch::Tensor LossScaler::unscale(const std::vector<torch::Tensor>& gradients) const {
  torch::NoGradGuard no_grad;
  if (gradients.empty()) return torch::zeros({});
  const auto on = torch::TensorOptions().device(gradients.front().device()).dtype(torch::kFloat);
  torch::Tensor found_inf = torch::zeros({1}, on);
  // 1 / S rounded once to float32, as GradScaler does (S is a power of 2 with the defaults).
  const torch::Tensor inverse = torch::full({1}, static_cast<float>(1.0 / state_.scale), on);
  at::_amp_foreach_non_finite_check_and_unscale_(gradients, found_inf, inverse);
  return found_inf.squeeze(0);
}

bool LossScaler::update(bool overflow) {
  // _amp_update_scale_'s rule, on the host, with the scale rounded to float32 as it keeps it.
  if (overflow) {
    state_.scale = static_cast<float>(state_.scale * options_.backoff);
    state_.good_steps = 0;
  } else if (++state_.good_steps == options_.interval) {
    const float grown = static_cast<float>(state_.scale * options_.growth);
    if (std::isfinite(grown)) state_.scale = grown;
    state_.good_steps = 0;
  }
  return state_.scale < options_.min_scale;
}

}  // namespace ddpm
