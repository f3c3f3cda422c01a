// The next training step's noise, drawn on a background thread while the current step runs.
// draw_noise() is host work (about 3 ms for a batch of 128 3x32x32 images on this project's
// CPU, 128 generators and normal_ calls); on a GPU the device would sit idle through it every
// step. The draws are draw_noise()'s exactly: a prefetch only moves when they are made.
#pragma once

#include <future>
#include <vector>

#include <torch/torch.h>

#include "diffusion/loss.h"

namespace ddpm {

class NoisePrefetcher {
 public:
  explicit NoisePrefetcher(int64_t timesteps) : timesteps_(timesteps) {}
  ~NoisePrefetcher();  // waits for a draw in flight
  NoisePrefetcher(NoisePrefetcher&&) = default;
  NoisePrefetcher& operator=(NoisePrefetcher&&) = delete;

  // draw_noise(x0, timesteps, key): the prefetched draw when it was for this key and shape,
  // else drawn now. On a GPU the copy to it is non-blocking, from page-locked memory.
  NoiseDraw take(const torch::Tensor& x0, const NoiseKey& key);

  // Starts drawing `key` for a batch shaped like x0, to be taken next; replaces any earlier
  // prefetch.
  void prefetch(const torch::Tensor& x0, const NoiseKey& key);

  // Whether the last take() got the prefetched draw.
  bool took_prefetched() const { return took_prefetched_; }

 private:
  void discard();

  int64_t timesteps_;
  std::future<NoiseDraw> pending_;
  NoiseKey pending_key_;
  std::vector<int64_t> pending_sizes_;
  bool took_prefetched_ = false;
};

}  // namespace ddpm
