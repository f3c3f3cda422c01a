// The variational bound (likelihood.h): its terms against closed forms, and the whole bound of
// the optimal model of discretized Gaussian data against that data's true NLL.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

#include "diffusion/likelihood.h"
#include "diffusion/schedule.h"
#include "test_support.h"

namespace ddpm {
namespace {

constexpr double kLn2 = std::numbers::ln2;

double phi(double z) { return 0.5 * std::erfc(-z / std::numbers::sqrt2); }

// A schedule of T steps: the linear DDPM betas scaled by 1000 / T (improved-diffusion's).
std::vector<double> linear_betas(int T) {
  std::vector<double> betas(T);
  for (int t = 0; t < T; ++t) {
    const double start = 1e-4 * 1000.0 / T, end = 0.02 * 1000.0 / T;
    betas[t] = T == 1 ? start : start + (end - start) * t / (T - 1);
  }
  return betas;
}

TEST(NormalKl, ClosedFormAndSign) {
  const auto kl = [](double m1, double v1, double m2, double v2) {
    return normal_kl(torch::tensor(m1, torch::kFloat64), torch::tensor(std::log(v1), torch::kFloat64),
                     torch::tensor(m2, torch::kFloat64), torch::tensor(std::log(v2), torch::kFloat64))
        .item<double>();
  };
  // KL(N(0.3, 0.5) || N(-0.2, 2)) = 0.5 (log(2/0.5) + (0.5 + 0.25) / 2 - 1).
  EXPECT_NEAR(kl(0.3, 0.5, -0.2, 2.0), 0.5 * (std::log(4.0) + 0.75 / 2.0 - 1.0), 1e-15);
  EXPECT_NEAR(kl(0.7, 1e-4, 0.7, 1e-4), 0.0, 1e-15);
  for (const double m : {-1.0, 0.0, 0.4}) {
    for (const double v : {1e-5, 0.3, 4.0}) EXPECT_GE(kl(m, v, 0.1, 0.2), 0.0);
  }
}

TEST(DiscretizedGaussian, OnePixelMatchesDirectComputation) {
  const auto log_likelihood = [](double x, double mean, double scale) {
    return discretized_gaussian_log_likelihood(torch::tensor(x, torch::kFloat64),
                                               torch::tensor(mean, torch::kFloat64),
                                               torch::tensor(std::log(scale), torch::kFloat64))
        .item<double>();
  };
  const double x = 128 / 127.5 - 1.0, h = 1.0 / 255.0;
  // A middle bin: log(Phi((x + h - m) / s) - Phi((x - h - m) / s)).
  for (const auto& [mean, scale] : std::vector<std::pair<double, double>>{
           {0.01, 0.02}, {0.0, 0.5}, {-0.3, 0.1}, {x + 0.2, 0.01}}) {
    const double direct = std::log(phi((x + h - mean) / scale) - phi((x - h - mean) / scale));
    EXPECT_NEAR(log_likelihood(x, mean, scale), direct, 1e-9 * std::max(1.0, std::abs(direct)))
        << mean << " " << scale;
  }
  // The open end bins.
  EXPECT_NEAR(log_likelihood(-1.0, -0.9, 0.05), std::log(phi((-1.0 + h + 0.9) / 0.05)), 1e-12);
  EXPECT_NEAR(log_likelihood(1.0, 0.9, 0.05), std::log(phi(-(1.0 - h - 0.9) / 0.05)), 1e-12);
  // The 256 bins of one Gaussian hold all its mass.
  double total = 0.0;
  for (int k = 0; k < 256; ++k) total += std::exp(log_likelihood(k / 127.5 - 1.0, 0.2, 0.3));
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(PriorTerm, NearZeroForTheStandardSchedules) {
  const torch::Tensor x0 = torch::tensor({-1.0, -0.2, 0.5, 1.0}, torch::kFloat64).view({4, 1, 1, 1});
  DiffusionConfig cosine;
  cosine.schedule = Schedule::cosine;
  for (const auto& [name, schedule] : std::vector<std::pair<const char*, NoiseSchedule>>{
           {"linear", NoiseSchedule(DiffusionConfig{})}, {"cosine", NoiseSchedule(cosine)}}) {
    const torch::Tensor prior = prior_term(schedule, x0);
    std::printf("prior term, %s schedule, x0 = -1, -0.2, 0.5, 1: %.3g %.3g %.3g %.3g bits/dim\n",
                name, prior[0].item<double>(), prior[1].item<double>(), prior[2].item<double>(),
                prior[3].item<double>());
    EXPECT_GE(prior.min().item<double>(), 0.0);
    EXPECT_LT(prior.max().item<double>(), 1e-4);  // alpha_bar_T: 4e-5 linear, 0 cosine
  }
}

// Discretized Gaussian data: each pixel takes grid value k with the mass P_k of N(m, s^2) in its
// bin. For continuous N(m, s^2) data the reverse process is Gaussian in closed form: with
// x_t = a x0 + sigma eps, E[x0 | x_t] = (s^2 a x_t + sigma^2 m) / (a^2 s^2 + sigma^2) and
// Var[x0 | x_t] = s^2 sigma^2 / (a^2 s^2 + sigma^2), so the optimal eps is
// (x_t - a E[x0 | x_t]) / sigma and the optimal variance of p(x_{t-1} | x_t) is
// coef_x0^2 Var[x0 | x_t] + beta~_t (beta~_0 = 0), which the learned-range output v reaches.
// With s much wider than a bin the model is near-optimal for the discretized data too.
class GaussianData {
 public:
  static constexpr double kMean = 0.1, kStd = 0.35;

  GaussianData() {
    for (int k = 0; k < 256; ++k) {
      const double x = k / 127.5 - 1.0;
      const double upper = k == 255 ? 1.0 : phi((x + 1.0 / 255.0 - kMean) / kStd);
      const double lower = k == 0 ? 0.0 : phi((x - 1.0 / 255.0 - kMean) / kStd);
      mass_.push_back(upper - lower);
    }
  }

  // [N, 1, side, side] draws and each image's true NLL in bits/dim.
  std::pair<torch::Tensor, torch::Tensor> draw(int64_t count, int64_t side, uint64_t seed) const {
    auto generator = at::detail::createCPUGenerator(seed);
    const torch::Tensor levels = torch::multinomial(torch::tensor(mass_, torch::kFloat64),
                                                    count * side * side, true, generator)
                                     .view({count, 1, side, side});
    const torch::Tensor log_mass = torch::tensor(mass_, torch::kFloat64).log();
    const torch::Tensor nll = -log_mass.index({levels}).flatten(1).mean(1) / kLn2;
    return {levels.to(torch::kFloat64) / 127.5 - 1.0, nll};
  }

  // The optimal network of a schedule: eps, and v of the optimal variance.
  static EpsilonPredictor optimal_model(const NoiseSchedule& schedule) {
    const ScheduleTable table = schedule.table();
    return [table](const torch::Tensor& x_t, const torch::Tensor& t) {
      const int64_t step = t[0].item<int64_t>();  // one t per call in nll_bound
      const double a = table.sqrt_alpha_bar[step], sigma = table.sqrt_one_minus_alpha_bar[step];
      const double s2 = kStd * kStd;
      const torch::Tensor x = x_t.to(torch::kFloat64);
      const torch::Tensor posterior_x0 = (x * (s2 * a) + sigma * sigma * kMean) /
                                         (a * a * s2 + sigma * sigma);
      const torch::Tensor eps = (x - posterior_x0 * a) / sigma;
      const double x0_variance = s2 * sigma * sigma / (a * a * s2 + sigma * sigma);
      const double coef = table.posterior_mean_coef_x0[step];
      const double variance =
          coef * coef * x0_variance + (step > 0 ? table.posterior_variance[step] : 0.0);
      const double low = table.posterior_log_variance_clipped[step];
      const double high = std::log(table.beta[step]);
      const double v = 2.0 * (std::log(variance) - low) / (high - low) - 1.0;
      return torch::cat({eps, torch::full_like(eps, v)}, 1).to(x_t.scalar_type());
    };
  }

 private:
  std::vector<double> mass_;
};

struct Gap {
  double mean, standard_error;
};

Gap bound_gap(int T, Variance variance, const torch::Tensor& x0, const torch::Tensor& nll) {
  const NoiseSchedule schedule(linear_betas(T));
  NllOptions options;
  options.bound = {Prediction::eps, variance, /*clip_denoised=*/false};
  options.seed = 7;  // the same draws for every variance
  const NllBatch result = nll_bound(GaussianData::optimal_model(schedule), schedule,
                                    x0.to(torch::kFloat32), options);
  const torch::Tensor gap = result.bits_per_dim - nll;
  return {gap.mean().item<double>(), gap.std().item<double>() / std::sqrt(double(gap.size(0)))};
}

TEST(GaussianOracle, OptimalModelBoundsTheTrueNllAndLearnedVarianceIsTightest) {
  const GaussianData data;
  const auto [x0, nll] = data.draw(/*count=*/150, /*side=*/16, /*seed=*/3);
  std::printf("true NLL of the data: %.4f bits/dim\n", nll.mean().item<double>());
  std::vector<double> small_gaps;
  for (const int T : {100, 400}) {
    const Gap large = bound_gap(T, Variance::fixed_large, x0, nll);
    const Gap small = bound_gap(T, Variance::fixed_small, x0, nll);
    const Gap learned = bound_gap(T, Variance::learned, x0, nll);
    std::printf("T = %d: bound - true NLL (bits/dim): fixed_large %.4f +- %.4f, fixed_small "
                "%.4f +- %.4f, learned %.4f +- %.4f\n",
                T, large.mean, large.standard_error, small.mean, small.standard_error,
                learned.mean, learned.standard_error);
    // A bound: not below the true NLL beyond the Monte Carlo noise (4 standard errors).
    for (const Gap& gap : {large, small, learned}) {
      EXPECT_GT(gap.mean, -4.0 * gap.standard_error) << "T = " << T;
    }
    // The optimal learned variance: within 0.03 bits/dim of the true NLL (the reverse steps
    // of Gaussian data are Gaussian: only the decoder's discretization and the noise remain),
    // and tighter than both fixed variances.
    EXPECT_LT(std::abs(learned.mean), 0.03) << "T = " << T;
    EXPECT_LT(learned.mean, large.mean - 0.03) << "T = " << T;
    EXPECT_LT(learned.mean, small.mean - 0.3) << "T = " << T;
    small_gaps.push_back(small.mean);
  }
  // fixed_small's gap shrinks as T grows (its variance approaches the true one).
  EXPECT_LT(small_gaps[1], 0.7 * small_gaps[0]);
}

TEST(NllBound, StrataCoverEveryKlTermOnce) {
  for (const auto& [T, K] : std::vector<std::pair<int64_t, int>>{
           {1000, 2}, {1000, 20}, {1000, 100}, {1000, 1000}, {50, 7}, {4, 4}}) {
    const std::vector<Stratum> strata = estimate_strata(T, K);
    ASSERT_EQ(strata.size(), size_t(K - 1));
    int64_t next = 1;
    for (const Stratum& stratum : strata) {
      EXPECT_EQ(stratum.first, next) << T << " " << K;
      EXPECT_GT(stratum.end, stratum.first) << T << " " << K;
      next = stratum.end;
    }
    EXPECT_EQ(next, T);
  }
  // Narrow at small t: with K = 20 of T = 1000 the first strata are single timesteps.
  EXPECT_EQ(estimate_strata(1000, 20)[0].end, 2);
  EXPECT_EQ(estimate_strata(1000, 20)[1].end, 3);
  EXPECT_CONTAINS(testing::error_of([] { estimate_strata(100, 1); }), "2 .. T = 100");
  EXPECT_CONTAINS(testing::error_of([] { estimate_strata(100, 101); }), "got 101");
}

TEST(NllBound, EstimateFromSomeTimestepsAgreesWithEveryTerm) {
  const GaussianData data;
  const auto [x0, nll] = data.draw(300, 8, 5);
  const NoiseSchedule schedule(linear_betas(100));
  NllOptions options;
  options.bound = {Prediction::eps, Variance::fixed_large, false};
  const auto model = GaussianData::optimal_model(schedule);
  const auto per_image = [&](const torch::Tensor& x, const torch::Tensor& t) {
    // The estimate draws a t per image: evaluate each image at its own t.
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < x.size(0); ++i) {
      rows.push_back(model(x.narrow(0, i, 1), t.narrow(0, i, 1)));
    }
    return torch::cat(rows);
  };
  const NllBatch every = nll_bound(per_image, schedule, x0.to(torch::kFloat32), options);
  options.timesteps = 12;
  const NllBatch estimate = nll_bound(per_image, schedule, x0.to(torch::kFloat32), options);
  // Unbiased: the mean difference over the images within 4 standard errors of 0.
  const torch::Tensor difference = estimate.bits_per_dim - every.bits_per_dim;
  const double mean = difference.mean().item<double>();
  const double se = difference.std().item<double>() / std::sqrt(double(x0.size(0)));
  std::printf("every term %.4f, estimate from 12 evaluations %.4f (difference %.4f +- %.4f) "
              "bits/dim\n", every.bits_per_dim.mean().item<double>(),
              estimate.bits_per_dim.mean().item<double>(), mean, se);
  EXPECT_GT(se, 0.0);
  EXPECT_LT(std::abs(mean), 4.0 * se);
  // The decoder term is exact in both (column 0, t = 0); the estimate's t lie in their strata.
  EXPECT_TRUE(torch::equal(estimate.timesteps.select(1, 0), torch::zeros({300}, torch::kLong)));
  const std::vector<Stratum> strata = estimate_strata(100, 12);
  for (int j = 1; j < 12; ++j) {
    EXPECT_GE(estimate.timesteps.select(1, j).min().item<int64_t>(), strata[j - 1].first);
    EXPECT_LT(estimate.timesteps.select(1, j).max().item<int64_t>(), strata[j - 1].end);
  }
  // Every term: each KL term is >= 0.
  EXPECT_GE(every.terms.narrow(1, 1, 99).min().item<double>(), -1e-12);
}

}  // namespace
}  // namespace ddpm
