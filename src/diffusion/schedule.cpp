// Noise schedules in float64 and the closed-form forward process.
#include "diffusion/schedule.h"

#include <cmath>
#include <numbers>

#include "ddpm/error.h"

namespace ddpm {
namespace {

std::vector<double> linspace(double start, double end, int count) {
  std::vector<double> values(count);
  for (int i = 0; i < count; ++i) {
    values[i] = count == 1 ? start : start + (end - start) * i / (count - 1);
  }
  return values;
}

// Nichol & Dhariwal (2021): alpha_bar(u) = cos^2((u + s) / (1 + s) * pi / 2) for u = t / T,
// beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), clipped at max_beta.
std::vector<double> cosine_betas(int timesteps, double s, double max_beta) {
  const auto alpha_bar = [s](double u) {
    const double angle = (u + s) / (1.0 + s) * std::numbers::pi / 2.0;
    return std::cos(angle) * std::cos(angle);
  };
  std::vector<double> betas(timesteps);
  for (int t = 0; t < timesteps; ++t) {
    const double ratio = alpha_bar(double(t + 1) / timesteps) / alpha_bar(double(t) / timesteps);
    betas[t] = std::min(1.0 - ratio, max_beta);
  }
  return betas;
}

torch::Tensor to_tensor(const std::vector<double>& values) {
  return torch::tensor(values, torch::kFloat64).to(torch::kFloat32);
}

}  // namespace

std::vector<double> make_betas(const DiffusionConfig& config) {
  const int steps = config.timesteps;
  if (config.schedule == Schedule::linear) {
    return linspace(config.beta_start, config.beta_end, steps);
  }
  if (config.schedule == Schedule::quadratic) {
    // The original DDPM code's "quad": linear in sqrt(beta).
    auto roots = linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), steps);
    for (double& root : roots) root *= root;
    return roots;
  }
  if (config.schedule == Schedule::sigmoid) {
    // A sigmoid over [-6, 6] rescaled to [beta_start, beta_end] (as in GeoDiff and diffusers).
    auto betas = linspace(-6.0, 6.0, steps);
    for (double& x : betas) {
      x = config.beta_start + (config.beta_end - config.beta_start) / (1.0 + std::exp(-x));
    }
    return betas;
  }
  if (config.schedule == Schedule::cosine) {
    return cosine_betas(steps, config.cosine_s, config.max_beta);
  }
  if (config.schedule == Schedule::custom) return config.betas;
  throw config_error("diffusion.schedule",
                     "unknown schedule " + std::to_string(static_cast<int>(config.schedule)));
}

ScheduleTable make_schedule_table(const std::vector<double>& betas) {
  const size_t count = betas.size();
  if (count == 0) throw config_error("diffusion.timesteps", "a schedule needs at least one step");
  ScheduleTable table;
  table.beta = betas;
  double product = 1.0;
  for (size_t t = 0; t < count; ++t) {
    const double beta = betas[t];
    if (!(beta > 0.0 && beta < 1.0)) {
      throw config_error("diffusion", "beta[" + std::to_string(t) + "] = " +
                                          std::to_string(beta) + " is outside (0, 1)");
    }
    const double alpha = 1.0 - beta;
    const double alpha_bar_prev = product;
    product *= alpha;
    const double alpha_bar = product;
    table.alpha.push_back(alpha);
    table.alpha_bar.push_back(alpha_bar);
    table.alpha_bar_prev.push_back(alpha_bar_prev);
    table.sqrt_alpha_bar.push_back(std::sqrt(alpha_bar));
    table.sqrt_one_minus_alpha_bar.push_back(std::sqrt(1.0 - alpha_bar));
    table.sqrt_recip_alpha.push_back(1.0 / std::sqrt(alpha));
    table.sqrt_recip_alpha_bar.push_back(1.0 / std::sqrt(alpha_bar));
    table.sqrt_recip_alpha_bar_minus_one.push_back(std::sqrt(1.0 / alpha_bar - 1.0));
    table.posterior_variance.push_back(beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar));
    table.posterior_mean_coef_x0.push_back(beta * std::sqrt(alpha_bar_prev) / (1.0 - alpha_bar));
    table.posterior_mean_coef_xt.push_back((1.0 - alpha_bar_prev) * std::sqrt(alpha) /
                                           (1.0 - alpha_bar));
  }
  // beta~_0 = 0, whose log is -inf; like the original code, t = 0 borrows beta~_1
  // (or beta_0 when T = 1).
  for (size_t t = 0; t < count; ++t) {
    const double variance = t > 0 ? table.posterior_variance[t]
                            : count > 1 ? table.posterior_variance[1]
                                        : table.beta[0];
    table.posterior_log_variance_clipped.push_back(std::log(variance));
  }
  return table;
}

NoiseSchedule::NoiseSchedule(const DiffusionConfig& config) : NoiseSchedule(make_betas(config)) {}

NoiseSchedule::NoiseSchedule(const std::vector<double>& betas)
    : table_(make_schedule_table(betas)) {
  beta = to_tensor(table_.beta);
  alpha = to_tensor(table_.alpha);
  alpha_bar = to_tensor(table_.alpha_bar);
  alpha_bar_prev = to_tensor(table_.alpha_bar_prev);
  sqrt_alpha_bar = to_tensor(table_.sqrt_alpha_bar);
  sqrt_one_minus_alpha_bar = to_tensor(table_.sqrt_one_minus_alpha_bar);
  sqrt_recip_alpha = to_tensor(table_.sqrt_recip_alpha);
  sqrt_recip_alpha_bar = to_tensor(table_.sqrt_recip_alpha_bar);
  sqrt_recip_alpha_bar_minus_one = to_tensor(table_.sqrt_recip_alpha_bar_minus_one);
  posterior_variance = to_tensor(table_.posterior_variance);
  posterior_log_variance_clipped = to_tensor(table_.posterior_log_variance_clipped);
  posterior_mean_coef_x0 = to_tensor(table_.posterior_mean_coef_x0);
  posterior_mean_coef_xt = to_tensor(table_.posterior_mean_coef_xt);
}

NoiseSchedule NoiseSchedule::to(torch::Device device) const {
  NoiseSchedule moved = *this;
  for (torch::Tensor* buffer :
       {&moved.beta, &moved.alpha, &moved.alpha_bar, &moved.alpha_bar_prev, &moved.sqrt_alpha_bar,
        &moved.sqrt_one_minus_alpha_bar, &moved.sqrt_recip_alpha, &moved.sqrt_recip_alpha_bar,
        &moved.sqrt_recip_alpha_bar_minus_one, &moved.posterior_variance,
        &moved.posterior_log_variance_clipped, &moved.posterior_mean_coef_x0,
        &moved.posterior_mean_coef_xt}) {
    *buffer = buffer->to(device);
  }
  return moved;
}

torch::Tensor NoiseSchedule::gather(const torch::Tensor& buffer, const torch::Tensor& t,
                                    const torch::Tensor& like) const {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == like.size(0), "timesteps must have shape [batch] = [",
              like.size(0), "], got ", t.sizes());
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return buffer.index_select(0, t.to(buffer.device(), torch::kLong)).view(shape).to(like.dtype());
}

torch::Tensor NoiseSchedule::q_sample(const torch::Tensor& x0, const torch::Tensor& t,
                                      const torch::Tensor& eps) const {
  return gather(sqrt_alpha_bar, t, x0) * x0 + gather(sqrt_one_minus_alpha_bar, t, x0) * eps;
}

torch::Tensor NoiseSchedule::predict_x0_from_eps(const torch::Tensor& x_t, const torch::Tensor& t,
                                                 const torch::Tensor& eps) const {
  return gather(sqrt_recip_alpha_bar, t, x_t) * x_t -
         gather(sqrt_recip_alpha_bar_minus_one, t, x_t) * eps;
}

torch::Tensor NoiseSchedule::predict_eps_from_x0(const torch::Tensor& x_t, const torch::Tensor& t,
                                                 const torch::Tensor& x0) const {
  return (gather(sqrt_recip_alpha_bar, t, x_t) * x_t - x0) /
         gather(sqrt_recip_alpha_bar_minus_one, t, x_t);
}

Posterior NoiseSchedule::q_posterior(const torch::Tensor& x0, const torch::Tensor& x_t,
                                     const torch::Tensor& t) const {
  Posterior posterior;
  posterior.mean =
      gather(posterior_mean_coef_x0, t, x_t) * x0 + gather(posterior_mean_coef_xt, t, x_t) * x_t;
  posterior.variance = gather(posterior_variance, t, x_t);
  posterior.log_variance_clipped = gather(posterior_log_variance_clipped, t, x_t);
  return posterior;
}

}  // namespace ddpm
