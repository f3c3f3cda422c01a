// The training objective; see loss.h.
#include "diffusion/loss.h"

#include "base/seed_mix.h"
#include "diffusion/likelihood.h"

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

torch::Tensor example_losses(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                             const torch::Tensor& x0, const NoiseDraw& draw,
                             const LossOptions& options) {
  const auto x_t = schedule.q_sample(x0, draw.t, draw.eps);
  const ModelOutput output = split_output(model(x_t, draw.t).to(torch::kFloat32), x0.size(1));
  const torch::Tensor predicted = output.prediction;
  torch::Tensor losses;
  if (options.kind != LossKind::vlb) {
    const torch::Tensor a = schedule.gather(schedule.sqrt_alpha_bar, draw.t, predicted);
    const torch::Tensor s = schedule.gather(schedule.sqrt_one_minus_alpha_bar, draw.t, predicted);
    const torch::Tensor target = prediction_target(
        options.prediction, x0.to(torch::kFloat32), draw.eps.to(torch::kFloat32), a, s);
    losses = (predicted - target).square().flatten(1).mean(1);
    if (options.min_snr) {
      // SNR_t = alpha_bar_t / (1 - alpha_bar_t), from the float32 buffers (t = 0: about 1e4).
      const torch::Tensor snr = (a * a / (s * s)).flatten();
      losses = losses * min_snr_weight(options.prediction, snr, options.min_snr_gamma);
    }
  }
  if (options.kind != LossKind::simple) {
    // hybrid: the mean from the frozen prediction, so that L_vlb trains only the variances.
    const bool frozen = options.kind == LossKind::hybrid;
    const ModelOutput used{frozen ? predicted.detach() : predicted, output.variance};
    const BoundOptions bound{options.prediction,
                             output.variance.defined() ? Variance::learned : options.variance,
                             /*clip_denoised=*/false};
    const torch::Tensor x_t32 = x_t.to(torch::kFloat32);
    const ReverseGaussian p = reverse_gaussian(schedule, used, x_t32, draw.t, bound);
    const torch::Tensor vlb = bound_term(schedule, x0.to(torch::kFloat32), x_t32, draw.t, p) *
                              double(schedule.timesteps());
    losses = losses.defined() ? losses + options.vlb_weight * vlb : vlb;
  }
  return losses;
}

torch::Tensor training_loss(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const torch::Tensor& x0, const NoiseDraw& draw,
                            const LossOptions& options) {
  if (options.prediction == Prediction::eps && !options.min_snr &&
      options.kind == LossKind::simple && !draw.weight.defined()) {
    return simple_loss(model, schedule, x0, draw);
  }
  const torch::Tensor losses = example_losses(model, schedule, x0, draw, options);
  return (draw.weight.defined() ? losses * draw.weight.to(losses.device()) : losses).mean();
}

}  // namespace ddpm
