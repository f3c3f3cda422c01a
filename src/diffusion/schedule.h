// The noise schedule and the closed-form forward process of DDPM.
//
// Timestep convention, used everywhere in this project: t is a 0-based index, t = 0 .. T-1,
// standing for the paper's t = 1 .. T. So alpha_bar[t] = prod_{s <= t} alpha[s],
// alpha_bar_prev[0] = 1 (the clean image), and the UNet is given the index t itself, as in the
// original implementation and in diffusers.
//
// Every quantity is computed in float64 (ScheduleTable) and kept as float32 tensors of shape [T].
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"

namespace ddpm {

// beta_t for t = 0 .. T-1 from the config's schedule (linear, cosine, quadratic, sigmoid, or
// custom: the config's own list).
std::vector<double> make_betas(const DiffusionConfig& config);

// The derived quantities, in float64, each of length T.
struct ScheduleTable {
  std::vector<double> beta, alpha, alpha_bar, alpha_bar_prev;
  std::vector<double> sqrt_alpha_bar, sqrt_one_minus_alpha_bar;
  std::vector<double> sqrt_recip_alpha;                 // 1 / sqrt(alpha)
  std::vector<double> sqrt_recip_alpha_bar;             // 1 / sqrt(alpha_bar)
  std::vector<double> sqrt_recip_alpha_bar_minus_one;  // sqrt(1 / alpha_bar - 1)
  std::vector<double> posterior_variance;               // beta~_t
  std::vector<double> posterior_log_variance_clipped;   // log beta~_t, with t = 0 taken from t = 1
  std::vector<double> posterior_mean_coef_x0;           // mu~ = coef_x0 * x0 + coef_xt * x_t
  std::vector<double> posterior_mean_coef_xt;
};

ScheduleTable make_schedule_table(const std::vector<double>& betas);

// q(x_{t-1} | x_t, x_0) = N(mean, variance I).
struct Posterior {
  torch::Tensor mean, variance, log_variance_clipped;
};

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const DiffusionConfig& config);
  explicit NoiseSchedule(const std::vector<double>& betas);

  int64_t timesteps() const { return static_cast<int64_t>(table_.beta.size()); }
  const ScheduleTable& table() const { return table_; }
  torch::Device device() const { return beta.device(); }
  // A copy whose tensors live on `device` (the float64 table is shared).
  NoiseSchedule to(torch::Device device) const;

  // x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, with t of shape [B] (int64).
  torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& t,
                         const torch::Tensor& eps) const;
  // x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), the inverse of q_sample.
  torch::Tensor predict_x0_from_eps(const torch::Tensor& x_t, const torch::Tensor& t,
                                    const torch::Tensor& eps) const;
  // eps = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t).
  torch::Tensor predict_eps_from_x0(const torch::Tensor& x_t, const torch::Tensor& t,
                                    const torch::Tensor& x0) const;
  Posterior q_posterior(const torch::Tensor& x0, const torch::Tensor& x_t,
                        const torch::Tensor& t) const;

  // Gathers buffer[t] for each batch element and shapes it [B, 1, ...] to broadcast over `like`.
  torch::Tensor gather(const torch::Tensor& buffer, const torch::Tensor& t,
                       const torch::Tensor& like) const;

  // float32 buffers of shape [T], on device().
  torch::Tensor beta, alpha, alpha_bar, alpha_bar_prev, sqrt_alpha_bar, sqrt_one_minus_alpha_bar,
      sqrt_recip_alpha, sqrt_recip_alpha_bar, sqrt_recip_alpha_bar_minus_one, posterior_variance,
      posterior_log_variance_clipped, posterior_mean_coef_x0, posterior_mean_coef_xt;

 private:
  ScheduleTable table_;
};

}  // namespace ddpm
