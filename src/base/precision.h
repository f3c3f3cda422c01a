// The number format a forward pass runs in (train.precision, sample.precision):
//   - fp32: float32 throughout, the default;
//   - bf16: autocast to bfloat16 (8 exponent bits, float32's range): Ampere (A100, RTX 30xx)
//     and newer GPUs run it on tensor cores; no loss scaling is needed;
//   - fp16: autocast to float16 (5 exponent bits): the tensor-core format of V100 and T4 and
//     older GPUs. Small gradients underflow in it, so training scales the loss (loss_scaler.h).
// Autocast (PyTorch's AMP) runs matrix products and convolutions in the low precision and keeps
// the weights, the optimizer and numerically sensitive ops (the loss, softmax) in float32. It
// runs on the CPU too, for tests: fp16 training is many times slower than float32 there, bf16
// is close to it only on processors with AMX (docs/BENCHMARKS.md).
#pragma once

#include <torch/torch.h>

#include "base/precision_name.h"

namespace ddpm {

// The dtype autocast runs in (float32 for fp32).
torch::ScalarType precision_dtype(Precision precision);

// Autocast on one device type for the guard's scope; nothing for fp32. Nests (restores the
// previous state on exit).
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, torch::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType device_type_ = c10::DeviceType::CPU;
  bool was_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat;
};

}  // namespace ddpm
