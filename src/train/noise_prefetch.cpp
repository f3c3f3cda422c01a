// Drawing the next step's noise ahead of time; see noise_prefetch.h.
#include "train/noise_prefetch.h"

#include <c10/core/DeviceGuard.h>

#include <optional>

namespace ddpm {

NoisePrefetcher::~NoisePrefetcher() { discard(); }

void NoisePrefetcher::discard() {
  if (!pending_.valid()) return;
  try {
    pending_.get();
  } catch (...) {
    // A failed prefetch is drawn again, and fails again, when it is taken; here it is unused.
  }
}

NoiseDraw NoisePrefetcher::take(const torch::Tensor& x0, const NoiseKey& key) {
  const bool gpu = x0.device().is_cuda();
  NoiseDraw cpu;
  const bool prefetched = pending_.valid() && pending_key_.seed == key.seed &&
                          pending_key_.step == key.step &&
                          pending_key_.first_example == key.first_example &&
                          pending_sizes_ == x0.sizes().vec();
  took_prefetched_ = prefetched;
  if (prefetched) {
    cpu = pending_.get();
  } else {
    discard();
    cpu = draw_noise_on_cpu(x0.sizes(), timesteps_, key, gpu);
  }
  NoiseDraw draw;
  draw.t = cpu.t.to(x0.device(), /*non_blocking=*/gpu);
  draw.eps = cpu.eps.to(x0.device(), x0.scalar_type(), /*non_blocking=*/gpu);
  return draw;
}

void NoisePrefetcher::prefetch(const torch::Tensor& x0, const NoiseKey& key) {
  discard();
  pending_key_ = key;
  pending_sizes_ = x0.sizes().vec();
  const torch::Device device = x0.device();
  pending_ = std::async(std::launch::async, [sizes = pending_sizes_, timesteps = timesteps_, key,
                                             device] {
    // Page-locked memory is allocated through the current GPU: make it x0's, not cuda:0.
    const c10::OptionalDeviceGuard guard(device.is_cuda() ? std::optional(device) : std::nullopt);
    return draw_noise_on_cpu(sizes, timesteps, key, device.is_cuda());
  });
}

}  // namespace ddpm
