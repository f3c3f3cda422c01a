// EMA of weights; see ema.h.
#include "train/ema.h"

#include <algorithm>
#include <cmath>

namespace ddpm {

double ema_decay_at(const EmaOptions& options, int64_t update) {
  if (!options.warmup) return options.decay;
  const double k = static_cast<double>(std::max<int64_t>(update, 1));
  return std::min(options.decay, 1.0 - std::pow(k, -options.power));
}

ExponentialMovingAverage::ExponentialMovingAverage(torch::nn::Module& model,
                                                   torch::nn::Module& average,
                                                   const EmaOptions& options)
    : model_parameters_(model.parameters()),
      average_parameters_(average.parameters()),
      options_(options) {
  TORCH_CHECK(model_parameters_.size() == average_parameters_.size(),
              "the EMA model must have the same parameters as the model");
  for (auto& parameter : average_parameters_) parameter.set_requires_grad(false);
}

double ExponentialMovingAverage::update(int64_t k) {
  torch::NoGradGuard no_grad;
  const double decay = ema_decay_at(options_, k);
  // lerp: ema + (1 - decay) * (weights - ema) = decay * ema + (1 - decay) * weights.
  at::_foreach_lerp_(average_parameters_, model_parameters_, 1.0 - decay);
  return decay;
}

void copy_weights(const torch::nn::Module& source, torch::nn::Module& target) {
  torch::NoGradGuard no_grad;
  const auto source_parameters = source.named_parameters();
  for (auto& item : target.named_parameters()) item.value().copy_(source_parameters[item.key()]);
  const auto source_buffers = source.named_buffers();
  for (auto& item : target.named_buffers()) item.value().copy_(source_buffers[item.key()]);
}

}  // namespace ddpm
