// Dynamic loss scaling for fp16 training, as PyTorch's AMP GradScaler does it. float16 holds
// magnitudes down to 6e-8 only, so small gradients would flush to zero; the loss is multiplied
// by the scale S before backward, which scales every gradient by S, and the gradients are
// divided by S again (unscaled) before clipping and the optimizer. A step whose gradients hold
// inf or NaN (S was too large) is skipped: no update, S *= backoff. After `interval`
// consecutive steps without one, S *= growth (when that stays finite). Defaults, as
// GradScaler's: S starts at 2^16, halves on overflow and doubles every 2000 good steps, so it
// settles near the largest scale the gradients tolerate. A scale below `min_scale` means even
// unscaled gradients overflow: the run has diverged (the trainer stops it).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace ddpm {

struct LossScalerOptions {
  double init_scale = 65536.0;  // train.loss_scale_init
  double growth = 2.0;          // train.loss_scale_growth (> 1)
  double backoff = 0.5;         // train.loss_scale_backoff (in (0, 1))
  int64_t interval = 2000;      // train.loss_scale_interval: good steps between growths
  double min_scale = 1.0;       // train.loss_scale_min: below it, the run has diverged
};

// What a checkpoint keeps: with it, a resumed run continues with the same scale.
struct LossScalerState {
  double scale = 65536.0;
  int64_t good_steps = 0;  // consecutive steps without overflow since the last change
};

class LossScaler {
 public:
  explicit LossScaler(const LossScalerOptions& options);

  double scale() const { return state_.scale; }
  const LossScalerState& state() const { return state_; }
  void restore(const LossScalerState& state) { state_ = state; }

  // loss * S, to call backward on.
  torch::Tensor scale_loss(const torch::Tensor& loss) const { return loss * state_.scale; }

  // Divides the gradients by S in place (one multi-tensor kernel per device and dtype) and
  // returns a float32 scalar tensor on their device: 1 when any of them held inf or NaN, else
  // 0. Queues work only: reading the flag is the caller's synchronisation.
  torch::Tensor unscale(const std::vector<torch::Tensor>& gradients) const;

  // After a step: an overflow halves S (backoff) and restarts the count; else the count grows,
  // and at `interval` S grows. Returns true when S fell below min_scale.
  bool update(bool overflow);

 private:
  LossScalerOptions options_;
  LossScalerState state_;
};

}  // namespace ddpm
