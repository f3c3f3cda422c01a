// The network the sampling core calls, whatever runs it: our UNet eagerly (UNetNetwork, here) or
// an AOTInductor package compiled from it (CompiledNetwork, compiled_network.h). Samplers,
// guidance, editing, inversion and the likelihood take a Network, so each of them runs on
// either without knowing which.
#pragma once

#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "model/unet.h"

namespace ddpm {

class Network {
 public:
  virtual ~Network() = default;

  // x: [B, C, H, W] float32; t: [B] timestep indices (int64, or float32 for fractional ones);
  // labels: [B] int64 classes, num_classes meaning "no class", or undefined (every image "no
  // class"; the only choice for an unconditional model). Returns the UNet's output (unet.h).
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                                const torch::Tensor& labels = {}) = 0;

  // The label that means "no class" (num_classes); unused for an unconditional model.
  virtual int64_t no_class() const = 0;

  // True: sampling in bf16 or fp16 runs forward() under autocast (the eager UNet). False: the
  // network computes in the precision it was built for and takes and returns float32.
  virtual bool takes_autocast() const = 0;

  // The most images one forward() takes (guidance doubles a batch); 0: no limit.
  virtual int64_t max_batch() const { return 0; }
};

// Our UNet run eagerly by LibTorch. Sampling puts it in eval mode for the chain.
class UNetNetwork final : public Network {
 public:
  explicit UNetNetwork(UNet model) : model_(std::move(model)) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const torch::Tensor& labels = {}) override {
    return model_->forward(x, t, labels);
  }
  int64_t no_class() const override { return model_->no_class(); }
  bool takes_autocast() const override { return true; }
  UNet& unet() { return model_; }

 private:
  UNet model_;
};

}  // namespace ddpm
