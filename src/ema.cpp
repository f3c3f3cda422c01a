// EMA of weights; see ema.h.
#include "ddpm/ema.h"

namespace ddpm {

ExponentialMovingAverage::ExponentialMovingAverage(torch::nn::Module& model,
                                                   torch::nn::Module& average, double decay)
    : model_parameters_(model.parameters()),
      average_parameters_(average.parameters()),
      decay_(decay) {
  TORCH_CHECK(model_parameters_.size() == average_parameters_.size(),
              "the EMA model must have the same parameters as the model");
  for (auto& parameter : average_parameters_) parameter.set_requires_grad(false);
}

void ExponentialMovingAverage::update() {
  torch::NoGradGuard no_grad;
  // lerp: ema + (1 - decay) * (weights - ema) = decay * ema + (1 - decay) * weights.
  at::_foreach_lerp_(average_parameters_, model_parameters_, 1.0 - decay_);
}

void copy_weights(const torch::nn::Module& source, torch::nn::Module& target) {
  torch::NoGradGuard no_grad;
  const auto source_parameters = source.named_parameters();
  for (auto& item : target.named_parameters()) item.value().copy_(source_parameters[item.key()]);
  const auto source_buffers = source.named_buffers();
  for (auto& item : target.named_buffers()) item.value().copy_(source_buffers[item.key()]);
}

}  // namespace ddpm
