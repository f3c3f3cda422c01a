// Exponential moving average of model weights: ema = decay * ema + (1 - decay) * weights, one
// multi-tensor update for all parameters (a launch per group of tensors, not per tensor).
#pragma once

#include <torch/torch.h>

namespace ddpm {

class ExponentialMovingAverage {
 public:
  // `average` starts as a copy of `model`'s weights; both must have the same parameters.
  ExponentialMovingAverage(torch::nn::Module& model, torch::nn::Module& average, double decay);
  void update();

 private:
  std::vector<torch::Tensor> model_parameters_, average_parameters_;
  double decay_;
};

// Copies every parameter and buffer of `source` into `target` (same names and shapes).
void copy_weights(const torch::nn::Module& source, torch::nn::Module& target);

}  // namespace ddpm
