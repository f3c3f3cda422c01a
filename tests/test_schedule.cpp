// Noise schedules and the forward process against an independent float64 computation written
// here from the formulas (not from schedule.cpp), and against sampling statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "config/choices.h"
#include "diffusion/schedule.h"

namespace ddpm {
namespace {

DiffusionConfig diffusion_config(const std::string& schedule, int timesteps = 1000) {
  DiffusionConfig config;
  config.schedule = choice_from_name<Schedule>(schedule, "diffusion.schedule");
  config.timesteps = timesteps;
  return config;
}

// Reference betas, one formula per schedule, from the papers' definitions.
std::vector<double> reference_betas(const DiffusionConfig& c) {
  const int T = c.timesteps;
  std::vector<double> betas(T);
  for (int i = 0; i < T; ++i) {
    const double u = T == 1 ? 0.0 : double(i) / (T - 1);
    if (c.schedule == Schedule::linear) {
      betas[i] = c.beta_start * (1 - u) + c.beta_end * u;
    } else if (c.schedule == Schedule::quadratic) {
      const double root = std::sqrt(c.beta_start) * (1 - u) + std::sqrt(c.beta_end) * u;
      betas[i] = root * root;
    } else if (c.schedule == Schedule::sigmoid) {
      const double x = -6.0 + 12.0 * u;
      betas[i] = c.beta_start + (c.beta_end - c.beta_start) / (1.0 + std::exp(-x));
    } else {
      const auto f = [&](double s) {
        return std::pow(std::cos((s / T + c.cosine_s) / (1 + c.cosine_s) * std::numbers::pi / 2),
                        2);
      };
      betas[i] = std::min(1.0 - f(i + 1) / f(i), c.max_beta);
    }
  }
  return betas;
}

class ScheduleKinds : public ::testing::TestWithParam<std::string> {};

TEST_P(ScheduleKinds, MatchesFloat64Reference) {
  const auto config = diffusion_config(GetParam());
  const NoiseSchedule schedule(config);
  const auto betas = reference_betas(config);
  const auto& table = schedule.table();
  ASSERT_EQ(schedule.timesteps(), 1000);
  double alpha_bar = 1.0;
  for (int t = 0; t < 1000; ++t) {
    const double alpha_bar_prev = alpha_bar;
    alpha_bar *= 1.0 - betas[t];  // the running product
    const double beta = betas[t];
    const double alpha = 1.0 - beta;
    EXPECT_NEAR(table.beta[t], beta, 1e-15);
    EXPECT_NEAR(table.alpha_bar[t] / alpha_bar, 1.0, 1e-12) << "t = " << t;
    EXPECT_NEAR(table.alpha_bar_prev[t] / alpha_bar_prev, 1.0, 1e-12);
    EXPECT_NEAR(table.sqrt_recip_alpha[t], 1.0 / std::sqrt(alpha), 1e-12);
    const double posterior_variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta;
    EXPECT_NEAR(table.posterior_variance[t], posterior_variance, 1e-15);
    EXPECT_NEAR(table.posterior_mean_coef_x0[t],
                std::sqrt(alpha_bar_prev) * beta / (1 - alpha_bar), 1e-12);
    EXPECT_NEAR(table.posterior_mean_coef_xt[t],
                std::sqrt(alpha) * (1 - alpha_bar_prev) / (1 - alpha_bar), 1e-12);
    // float32 buffers hold the same numbers to float32 precision.
    EXPECT_NEAR(schedule.alpha_bar[t].item<float>(), alpha_bar, 1e-7 + 1e-6 * alpha_bar);
    EXPECT_NEAR(schedule.sqrt_one_minus_alpha_bar[t].item<float>(), std::sqrt(1 - alpha_bar),
                1e-6);
  }
  EXPECT_EQ(schedule.alpha_bar.dtype(), torch::kFloat32);
}

INSTANTIATE_TEST_SUITE_P(AllSchedules, ScheduleKinds,
                         ::testing::Values("linear", "cosine", "quadratic", "sigmoid"));

TEST(Schedule, LinearEndPointsAreTheConfiguredBetas) {
  const NoiseSchedule schedule(diffusion_config("linear"));
  EXPECT_DOUBLE_EQ(schedule.table().beta.front(), 1e-4);
  EXPECT_DOUBLE_EQ(schedule.table().beta.back(), 0.02);
  // The DDPM schedule leaves almost no signal at T: alpha_bar_T ~ 4.0e-5.
  EXPECT_NEAR(schedule.table().alpha_bar.back(), 4.036e-5, 0.01e-5);
}

TEST(Schedule, CosineEndPoints) {
  const NoiseSchedule schedule(diffusion_config("cosine"));
  const auto& table = schedule.table();
  // alpha_bar_0 = f(1)/f(0) with f(u) = cos^2((u/T + s)/(1 + s) pi/2): very close to 1.
  const double s = 0.008;
  const auto f = [&](double u) {
    return std::pow(std::cos((u / 1000.0 + s) / (1 + s) * std::numbers::pi / 2), 2);
  };
  EXPECT_NEAR(table.alpha_bar.front(), f(1) / f(0), 1e-12);
  EXPECT_GT(table.alpha_bar.front(), 0.9999);
  // f(T) = 0, so the last beta would be 1: it is clipped at max_beta = 0.999.
  EXPECT_DOUBLE_EQ(table.beta.back(), 0.999);
  EXPECT_LT(table.alpha_bar.back(), 1e-7);
  // Before the clip, alpha_bar follows f(t+1)/f(0) exactly.
  EXPECT_NEAR(table.alpha_bar[499], f(500) / f(0), 1e-9);
}

TEST(Schedule, PosteriorMatchesGaussianConditioning) {
  // Independent derivation: (x_{t-1}, x_t) given x0 is jointly Gaussian with
  // x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}) and x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z.
  // Conditioning on x_t: mean = m1 + S12/S22 (x_t - m2), variance = S11 - S12^2/S22.
  const NoiseSchedule schedule(diffusion_config("linear"));
  const auto& table = schedule.table();
  const double x0 = 0.7, xt = -0.3;
  for (int t : {1, 10, 250, 999}) {
    const double abar_prev = table.alpha_bar_prev[t], alpha = table.alpha[t];
    const double beta = table.beta[t];
    const double s11 = 1 - abar_prev;
    const double s12 = std::sqrt(alpha) * (1 - abar_prev);
    const double s22 = alpha * (1 - abar_prev) + beta;
    const double m1 = std::sqrt(abar_prev) * x0;
    const double m2 = std::sqrt(alpha) * m1;
    const double mean = m1 + s12 / s22 * (xt - m2);
    const double variance = s11 - s12 * s12 / s22;

    const auto options = torch::TensorOptions().dtype(torch::kFloat32);
    const auto posterior = schedule.q_posterior(torch::full({1, 1, 1, 1}, x0, options),
                                                torch::full({1, 1, 1, 1}, xt, options),
                                                torch::tensor({int64_t(t)}));
    EXPECT_NEAR(posterior.mean.item<double>(), mean, 1e-5) << "t = " << t;
    EXPECT_NEAR(posterior.variance.item<double>(), variance, 1e-6 * (1 + variance));
    EXPECT_NEAR(table.posterior_variance[t], variance, 1e-12);
  }
  // t = 0 has variance 0; its clipped log variance borrows t = 1.
  EXPECT_EQ(table.posterior_variance[0], 0.0);
  EXPECT_DOUBLE_EQ(table.posterior_log_variance_clipped[0], std::log(table.posterior_variance[1]));
}

TEST(Schedule, QSampleStatistics) {
  // Over many draws, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps has mean sqrt(abar) x0 and
  // variance 1 - abar. With n = 200000 draws the standard error of the mean is
  // sqrt((1 - abar)/n) < 0.0023; we allow 5 standard errors. The sample variance has relative
  // standard error sqrt(2/n) = 0.0032; we allow 2%.
  const NoiseSchedule schedule(diffusion_config("linear"));
  const int64_t n = 200000;
  auto generator = at::detail::createCPUGenerator(1234);
  const auto x0 = torch::full({n, 1, 1, 1}, 0.8);
  for (int64_t t : {0, 100, 500, 999}) {
    const auto eps = torch::randn({n, 1, 1, 1}, generator);
    const auto x_t = schedule.q_sample(x0, torch::full({n}, t, torch::kLong), eps);
    const double abar = schedule.table().alpha_bar[t];
    const double standard_error = std::sqrt((1 - abar) / n);
    EXPECT_NEAR(x_t.mean().item<double>(), std::sqrt(abar) * 0.8, 5 * standard_error)
        << "t = " << t;
    EXPECT_NEAR(x_t.var().item<double>() / (1 - abar), 1.0, 0.02) << "t = " << t;
  }
}

TEST(Schedule, PredictX0InvertsQSample) {
  const NoiseSchedule schedule(diffusion_config("cosine"));
  torch::manual_seed(0);
  const auto x0 = torch::rand({4, 3, 8, 8}) * 2 - 1;
  const auto eps = torch::randn({4, 3, 8, 8});
  const auto t = torch::tensor({0, 10, 500, 900}, torch::kLong);
  const auto x_t = schedule.q_sample(x0, t, eps);
  EXPECT_TRUE(torch::allclose(schedule.predict_x0_from_eps(x_t, t, eps), x0, 1e-3, 1e-3));
  EXPECT_TRUE(torch::allclose(schedule.predict_eps_from_x0(x_t, t, x0), eps, 1e-3, 1e-3));
}

TEST(Schedule, SingleStepScheduleIsWellDefined) {
  const NoiseSchedule schedule(diffusion_config("linear", 1));
  EXPECT_EQ(schedule.timesteps(), 1);
  EXPECT_DOUBLE_EQ(schedule.table().beta[0], 1e-4);
  EXPECT_TRUE(std::isfinite(schedule.table().posterior_log_variance_clipped[0]));
}

}  // namespace
}  // namespace ddpm
