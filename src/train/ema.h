// Exponential moving average of model weights: ema = decay * ema + (1 - decay) * weights, one
// multi-tensor update for all parameters (a launch per group of tensors, not per tensor).
// With warm-up, the decay of the k-th update (k = 1, 2, ...) is min(decay, 1 - k^-power), as
// diffusers' EMAModel(use_ema_warmup=True, inv_gamma=1): 0 at k = 1 (the average becomes the
// weights), 0.41 at k = 2 with power 0.75, 0.99 at k = 464, 0.999 at k = 10,000. A short run
// then samples from an average of its recent weights rather than of its first ones.
#pragma once

#include <torch/torch.h>

namespace ddpm {

struct EmaOptions {
  double decay = 0.9999;
  bool warmup = false;
  double power = 0.75;
};

// The decay of update k (1-based).
double ema_decay_at(const EmaOptions& options, int64_t update);

class ExponentialMovingAverage {
 public:
  // `average` starts as a copy of `model`'s weights; both must have the same parameters.
  ExponentialMovingAverage(torch::nn::Module& model, torch::nn::Module& average,
                           const EmaOptions& options);
  // Update k (1-based; the training step, so that a resumed run continues the ramp). Returns
  // the decay it used.
  double update(int64_t k);

 private:
  std::vector<torch::Tensor> model_parameters_, average_parameters_;
  EmaOptions options_;
};

// Copies every parameter and buffer of `source` into `target` (same names and shapes).
void copy_weights(const torch::nn::Module& source, torch::nn::Module& target);

}  // namespace ddpm
