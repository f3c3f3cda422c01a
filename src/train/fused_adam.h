// Adam's update for all parameters in one multi-tensor kernel (ATen's _fused_adam_, on the CPU
// and on CUDA) instead of eight operations per parameter tensor. The state stays in the
// torch::optim::Adam it is given (exp_avg, exp_avg_sq and step per parameter, created as Adam
// creates them), so checkpoints save and restore it unchanged, and the arithmetic is Adam's:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)
// with weight decay added to g as L2 (Adam, not AdamW), as torch::optim::Adam does.
#pragma once

#include <torch/torch.h>

namespace ddpm {

// One step over every parameter that has a gradient, with each group's options (amsgrad is
// refused: ddpm::Error, internal). Parameters without a gradient keep their state.
void fused_adam_step(torch::optim::Adam& optimizer);

}  // namespace ddpm
