// L_simple; see loss.h.
#include "ddpm/loss.h"

#include "ddpm/seed_mix.h"

namespace ddpm {

NoiseDraw draw_noise_on_cpu(at::IntArrayRef sizes, int64_t timesteps, const NoiseKey& key,
                            bool pinned) {
  const auto cpu = torch::TensorOptions().device(torch::kCPU).pinned_memory(pinned);
  torch::Tensor t = torch::empty({sizes[0]}, cpu.dtype(torch::kLong));
  torch::Tensor eps = torch::empty(sizes, cpu.dtype(torch::kFloat32));
  // A stream constant keeps these seeds apart from the loader's (shuffle, flips).
  const uint64_t step_seed =
      splitmix64(splitmix64(key.seed ^ 0x6e6f697365ULL) ^ static_cast<uint64_t>(key.step));
  for (int64_t i = 0; i < sizes[0]; ++i) {
    auto generator = at::detail::createCPUGenerator(
        splitmix64(step_seed ^ static_cast<uint64_t>(key.first_example + i)));
    t.select(0, i).random_(0, timesteps, generator);
    eps.select(0, i).normal_(0.0, 1.0, generator);
  }
  return {t, eps};
}

NoiseDraw draw_noise(const torch::Tensor& x0, int64_t timesteps, const NoiseKey& key) {
  const NoiseDraw cpu = draw_noise_on_cpu(x0.sizes(), timesteps, key);
  NoiseDraw draw;
  draw.t = cpu.t.to(x0.device());
  draw.eps = cpu.eps.to(x0.device(), x0.scalar_type());
  return draw;
}

torch::Tensor simple_loss(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const torch::Tensor& x0, const NoiseDraw& draw) {
  const auto x_t = schedule.q_sample(x0, draw.t, draw.eps);
  const auto predicted = model(x_t, draw.t);
  return torch::mse_loss(predicted.to(torch::kFloat32), draw.eps.to(torch::kFloat32));
}

}  // namespace ddpm
