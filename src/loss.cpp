// L_simple; see loss.h.
#include "ddpm/loss.h"

namespace ddpm {

NoiseDraw draw_noise(const torch::Tensor& x0, int64_t timesteps, at::Generator& generator) {
  // Drawn on the generator's device, then moved, so a CPU generator gives the same draw
  // whatever device the model runs on.
  const auto cpu = torch::TensorOptions().device(torch::kCPU);
  NoiseDraw draw;
  draw.t = torch::randint(0, timesteps, {x0.size(0)}, generator, cpu.dtype(torch::kLong))
               .to(x0.device());
  draw.eps = torch::randn(x0.sizes(), generator, cpu.dtype(torch::kFloat32))
                 .to(x0.device(), x0.scalar_type());
  return draw;
}

torch::Tensor simple_loss(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const torch::Tensor& x0, const NoiseDraw& draw) {
  const auto x_t = schedule.q_sample(x0, draw.t, draw.eps);
  const auto predicted = model(x_t, draw.t);
  return torch::mse_loss(predicted.to(torch::kFloat32), draw.eps.to(torch::kFloat32));
}

}  // namespace ddpm
