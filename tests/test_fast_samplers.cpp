// The samplers of src/diffusion/solvers/ (and ddpm, ddim in the same loop) against closed forms:
//   - the grids against diffusers' timestep conventions, worked out by hand here;
//   - convergence against the exact probability-flow ODE of Gaussian data, whose optimal
//     predictor and ODE solution are closed-form per pixel, in float64;
//   - the distribution the stochastic samplers reach, over 16,000 samples;
//   - diffusers' own scheduler tests (tests/schedulers/ in its repository): the same dummy
//     model and sample, and their reference sums and means;
//   - the cost (network evaluations), noise draws and batch invariance of every sampler.
// tests/sampler_parity_check.py compares the same samplers with diffusers' schedulers directly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "ddpm/error.h"
#include "diffusion/image_chains.h"
#include "diffusion/sampler.h"
#include "diffusion/solvers/solver.h"  // the steps themselves, for diffusers' loops
#include "test_support.h"

namespace ddpm {
namespace {

SamplerOptions options_for(SamplerKind kind, int steps, const std::string& spacing,
                           bool clip = false, double eta = 0.0) {
  SamplerOptions options;
  options.kind = kind;
  options.steps = steps;
  options.spacing = testing::spacing_named(spacing);
  options.clip_denoised = clip;
  options.eta = eta;
  return options;
}

NoiseSchedule linear_schedule(int64_t timesteps) {
  DiffusionConfig diffusion;
  diffusion.timesteps = timesteps;
  return NoiseSchedule(diffusion);
}

// ---- grids -------------------------------------------------------------------------------

TEST(TimestepGrid, DpmSolverLinspaceAndLeadingDropTheZeroOfAnNPlusOneGrid) {
  const NoiseSchedule schedule = linear_schedule(1000);
  // np.linspace(0, 999, 11).round()[::-1][:-1]: 499.5 rounds to the even 500.
  const TimestepGrid linspace =
      timestep_grid(schedule.table(), SamplerKind::dpmpp_2m, 10, Spacing::linspace);
  EXPECT_EQ(linspace.timesteps,
            (std::vector<double>{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}));
  // (np.arange(0, 11) * (1000 // 11))[::-1][:-1]
  const TimestepGrid leading =
      timestep_grid(schedule.table(), SamplerKind::dpmpp_2m_sde, 10, Spacing::leading);
  EXPECT_EQ(leading.timesteps,
            (std::vector<double>{900, 810, 720, 630, 540, 450, 360, 270, 180, 90}));
  ASSERT_EQ(leading.alpha_bar.size(), 11u);
  EXPECT_EQ(leading.alpha_bar[3], schedule.table().alpha_bar[630]);
  EXPECT_EQ(leading.alpha_bar.back(), 1.0);
  EXPECT_FALSE(leading.fractional);
  // ddim keeps its own linspace: np.linspace(0, 999, 10).round() (999 / 9 = 111).
  EXPECT_EQ(timestep_grid(schedule.table(), SamplerKind::ddim, 10, Spacing::linspace).timesteps,
            (std::vector<double>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
}

TEST(TimestepGrid, EulerLinspaceIsFractionalWithLinearlyInterpolatedSigma) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const TimestepGrid grid = timestep_grid(schedule.table(), SamplerKind::euler, 7, Spacing::linspace);
  // np.linspace(0, 999, 7, dtype=np.float32)[::-1]: 999 / 6 = 166.5.
  EXPECT_EQ(grid.timesteps, (std::vector<double>{999, 832.5, 666, 499.5, 333, 166.5, 0}));
  EXPECT_TRUE(grid.fractional);
  const auto& ab = schedule.table().alpha_bar;
  const auto sigma = [&](int64_t t) { return std::sqrt((1 - ab[t]) / ab[t]); };
  EXPECT_NEAR(grid.sigma(1), 0.5 * (sigma(832) + sigma(833)), 1e-12 * sigma(833));
  EXPECT_NEAR(grid.sigma(2), sigma(666), 1e-12 * sigma(666));
  EXPECT_EQ(grid.sigma(7), 0.0);
}

TEST(TimestepGrid, KarrasSigmasFollowEquation5AndTheirTimestepsInvertTheLogInterpolation) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const auto& ab = schedule.table().alpha_bar;
  const auto sigma = [&](int64_t t) { return std::sqrt((1 - ab[t]) / ab[t]); };
  const double lo = sigma(0), hi = sigma(999);
  const TimestepGrid grid = timestep_grid(schedule.table(), SamplerKind::heun, 12, Spacing::karras);
  ASSERT_EQ(grid.steps(), 12);
  for (int i = 0; i < 12; ++i) {
    const double root = std::pow(hi, 1 / 7.0) + i / 11.0 * (std::pow(lo, 1 / 7.0) -
                                                           std::pow(hi, 1 / 7.0));
    EXPECT_NEAR(grid.sigma(i), std::pow(root, 7.0), 1e-12 * std::pow(root, 7.0)) << i;
    // The timestep is where log sigma, interpolated linearly between the neighbouring integer
    // timesteps, reaches sigma_i (float32 timesteps: 1e-6 relative).
    const double t = grid.timesteps[i];
    const int64_t j = std::min<int64_t>(int64_t(std::floor(t)), 998);
    const double back = std::exp((1 - (t - j)) * std::log(sigma(j)) +
                                 (t - j) * std::log(sigma(j + 1)));
    EXPECT_NEAR(back / grid.sigma(i), 1.0, 1e-5) << i;
  }
  EXPECT_EQ(grid.timesteps.front(), 999.0);
  EXPECT_EQ(grid.timesteps.back(), 0.0);
  // The dpmpp samplers round the same timesteps to integers (diffusers does), but keep sigma_i.
  const TimestepGrid dpm = timestep_grid(schedule.table(), SamplerKind::dpmpp_2m, 12, Spacing::karras);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(dpm.timesteps[i], std::nearbyint(grid.timesteps[i]));
    EXPECT_EQ(dpm.sigma(i), grid.sigma(i));
  }
  const std::vector<double>& sigmas = schedule.table().sqrt_recip_alpha_bar_minus_one;
  for (const int64_t t : {0, 1, 17, 500, 998, 999}) {
    EXPECT_NEAR(timestep_for_sigma(sigmas, sigma(t)), double(t), 1e-9);
  }
}

TEST(TimestepGrid, RefusesWhatASamplerCannotRun) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const auto message = [&](const SamplerOptions& options) {
    try {
      validate_sampler_options(options, schedule.timesteps());
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(options_for(SamplerKind::ddim, 10, "karras")).find("sample.spacing"),
            std::string::npos);
  EXPECT_NE(message(options_for(SamplerKind::euler, 10, "uniform", false, 0.5)).find("sample.eta"),
            std::string::npos);
  EXPECT_NE(message(options_for(SamplerKind::dpmpp_2m, 1000, "linspace")).find("sample.steps"),
            std::string::npos);
  EXPECT_EQ(message(options_for(SamplerKind::dpmpp_2m, 999, "linspace")), "no error");
  EXPECT_EQ(message(options_for(SamplerKind::dpmpp_2m, 1000, "trailing")), "no error");
  EXPECT_NE(testing::error_of([] { testing::spacing_named("karas"); }).find("karras"), std::string::npos);
  EXPECT_THROW(choice_from_name<SamplerKind>("dpm++", "sample.sampler"), Error);
}

// ---- the exact oracle --------------------------------------------------------------------

// Data x0 ~ N(mu, s^2) per pixel. In y = x_t / sqrt(ab) = x0 + sigma eps the optimal denoiser is
// D(y, sigma) = mu + (y - mu) s^2 / (s^2 + sigma^2), and the probability-flow ODE
// dy/dsigma = (y - D) / sigma keeps (y - mu) / sqrt(s^2 + sigma^2) constant.
struct GaussianData {
  torch::Tensor mu, s;  // [1, 1, 4, 4], float64

  GaussianData() {
    const auto p = torch::arange(16, torch::kFloat64).view({1, 1, 4, 4});
    mu = -0.6 + 1.2 * p / 15.0;
    s = 0.2 + 0.5 * torch::remainder(7 * p, 16) / 15.0;
  }

  // The optimal eps-predictor on `grid`: the model's timestep names the grid point, whose
  // alpha_bar the solver steps with.
  EpsilonPredictor predictor(const TimestepGrid& grid) const {
    std::map<double, double> alpha_bar;
    for (int i = 0; i < grid.steps(); ++i) alpha_bar[grid.timesteps[i]] = grid.alpha_bar[i];
    return [=, mu = mu, s = s](const torch::Tensor& x, const torch::Tensor& t) {
      const double ab = alpha_bar.at(t[0].to(torch::kFloat64).item<double>());
      return (x - std::sqrt(ab) * mu) * std::sqrt(1 - ab) / (ab * s * s + (1 - ab));
    };
  }

  // The exact ODE solution from x_T at the grid's first point to its last nonzero sigma, then
  // denoised: every sampler's last step is x0 = D(y, sigma_last), so this leaves exactly the
  // solver's own error on [sigma_last, sigma_first].
  torch::Tensor exact(const torch::Tensor& x_T, const TimestepGrid& grid) const {
    const double first = grid.sigma(0), last = grid.sigma(grid.steps() - 1);
    const auto y_T = x_T / std::sqrt(grid.alpha_bar[0]);
    const auto y = mu + (y_T - mu) * torch::sqrt((s * s + last * last) / (s * s + first * first));
    return mu + (y - mu) * (s * s) / (s * s + last * last);
  }

  // The exact ODE solution from x_T at the grid's first point all the way to sigma = 0.
  torch::Tensor endpoint(const torch::Tensor& x_T, const TimestepGrid& grid) const {
    const double first = grid.sigma(0);
    const auto y_T = x_T / std::sqrt(grid.alpha_bar[0]);
    return mu + (y_T - mu) * s / torch::sqrt(s * s + first * first);
  }
};

double solver_error(SamplerKind kind, const std::string& spacing, int steps,
                    bool to_sigma_zero = false) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const SamplerOptions options = options_for(kind, steps, spacing);
  const TimestepGrid grid =
      timestep_grid(schedule.table(), kind, steps, testing::spacing_named(spacing));
  const GaussianData data;
  auto generator = at::detail::createCPUGenerator(7);
  const auto x_T = torch::randn({3, 1, 4, 4}, generator, torch::kFloat64);
  const auto x_0 = run_sampler(data.predictor(grid), schedule, options, x_T,
                               [](int) -> torch::Tensor { throw std::logic_error("noise"); });
  EXPECT_EQ(x_0.scalar_type(), torch::kFloat64);
  return (x_0 - (to_sigma_zero ? data.endpoint(x_T, grid) : data.exact(x_T, grid)))
      .abs()
      .max()
      .item<double>();
}

struct ConvergenceCase {
  std::string name;
  SamplerKind kind;
  std::string spacing;
  double order;
};

class SamplerConvergence : public ::testing::TestWithParam<ConvergenceCase> {};

// The error against the exact ODE solution at 20, 40 and 80 steps: the least-squares slope of
// log error over log steps is the solver's order, within 0.35 (measured 2026-12-02: 1.00 for
// ddim and euler, 2.0-2.3 for heun and dpmpp_2m). The spacings are ones whose last point does not
// move with the number of steps (trailing's does, and mixes in a change of the interval); the
// dpmpp karras grid rounds timesteps but the oracle is keyed by them, and 12 karras points or
// more do not round two to the same timestep here.
TEST_P(SamplerConvergence, ErrorFallsAtTheSolversOrder) {
  const ConvergenceCase& test_case = GetParam();
  std::vector<double> logs_n, logs_e;
  for (const int steps : {20, 40, 80}) {
    const double error = solver_error(test_case.kind, test_case.spacing, steps);
    ASSERT_GT(error, 0.0);
    logs_n.push_back(std::log(double(steps)));
    logs_e.push_back(std::log(error));
  }
  const double mean_n = (logs_n[0] + logs_n[1] + logs_n[2]) / 3;
  const double mean_e = (logs_e[0] + logs_e[1] + logs_e[2]) / 3;
  double covariance = 0, variance = 0;
  for (int k = 0; k < 3; ++k) {
    covariance += (logs_n[k] - mean_n) * (logs_e[k] - mean_e);
    variance += (logs_n[k] - mean_n) * (logs_n[k] - mean_n);
  }
  const double slope = -covariance / variance;
  std::printf("%-20s errors at 20, 40, 80 steps: %.3g %.3g %.3g, slope %.2f\n",
              test_case.name.c_str(), std::exp(logs_e[0]), std::exp(logs_e[1]),
              std::exp(logs_e[2]), slope);
  EXPECT_NEAR(slope, test_case.order, 0.35)
      << "errors " << std::exp(logs_e[0]) << ", " << std::exp(logs_e[1]) << ", "
      << std::exp(logs_e[2]);
}

INSTANTIATE_TEST_SUITE_P(
    Sampler, SamplerConvergence,
    ::testing::Values(ConvergenceCase{"ddim_uniform", SamplerKind::ddim, "uniform", 1.0},
                      ConvergenceCase{"euler_karras", SamplerKind::euler, "karras", 1.0},
                      ConvergenceCase{"euler_quadratic", SamplerKind::euler, "quadratic", 1.0},
                      ConvergenceCase{"heun_karras", SamplerKind::heun, "karras", 2.0},
                      ConvergenceCase{"heun_uniform", SamplerKind::heun, "uniform", 2.0},
                      ConvergenceCase{"dpmpp_2m_uniform", SamplerKind::dpmpp_2m, "uniform", 2.0},
                      ConvergenceCase{"dpmpp_2m_quadratic", SamplerKind::dpmpp_2m, "quadratic",
                                      2.0},
                      ConvergenceCase{"dpmpp_2m_karras", SamplerKind::dpmpp_2m, "karras", 2.0}),
    [](const ::testing::TestParamInfo<ConvergenceCase>& info) { return info.param.name; });

// Few steps, against the exact ODE solution all the way to sigma = 0 (what the image is): the
// second-order solvers are closer than ddim on the same spacing. Measured (2026-12-02), max
// error over 48 pixels: at 10 steps ddim 0.404 (uniform) and 0.251 (quadratic), heun 0.121
// (uniform), dpmpp_2m 0.127 (quadratic); at 20 steps ddim 0.124 and dpmpp_2m 0.0239 (quadratic).
// On this problem dpmpp_2m needs 20 steps to be several times closer; at 10 it is 2x.
TEST(SamplerConvergence, SecondOrderSolversBeatDdimAtFewSteps) {
  const auto error = [](SamplerKind kind, const std::string& spacing, int steps) {
    const double value = solver_error(kind, spacing, steps, /*to_sigma_zero=*/true);
    std::printf("%-9s %-9s %2d steps: max error %.3g\n", choice_name(kind).c_str(),
                spacing.c_str(), steps, value);
    return value;
  };
  EXPECT_GT(error(SamplerKind::ddim, "uniform", 10) / error(SamplerKind::heun, "uniform", 10), 3.0);
  EXPECT_GT(error(SamplerKind::ddim, "quadratic", 10) / error(SamplerKind::heun, "quadratic", 10),
            2.0);
  EXPECT_GT(
      error(SamplerKind::ddim, "quadratic", 10) / error(SamplerKind::dpmpp_2m, "quadratic", 10),
      1.8);
  EXPECT_GT(
      error(SamplerKind::ddim, "quadratic", 20) / error(SamplerKind::dpmpp_2m, "quadratic", 20),
      4.0);
}

// DDIM with eta = 0 is Euler's method on the sigma ODE (Song et al. 2020, section 4.3): two
// different formulas, the same numbers up to float64 rounding.
TEST(SamplerConvergence, DdimIsEulerOnTheSigmaOde) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const GaussianData data;
  const auto x_T = torch::randn({2, 1, 4, 4}, torch::kFloat64);
  for (const std::string spacing : {"uniform", "leading", "trailing"}) {
    const TimestepGrid grid =
        timestep_grid(schedule.table(), SamplerKind::ddim, 25, testing::spacing_named(spacing));
    const auto none = [](int) -> torch::Tensor { throw std::logic_error("noise"); };
    const auto ddim = run_sampler(data.predictor(grid), schedule,
                                  options_for(SamplerKind::ddim, 25, spacing), x_T, none);
    const auto euler = run_sampler(data.predictor(grid), schedule,
                                   options_for(SamplerKind::euler, 25, spacing), x_T, none);
    EXPECT_LT((ddim - euler).abs().max().item<double>(), 1e-12) << spacing;
  }
}

// ---- stochastic samplers: the distribution they reach ------------------------------------

struct DistributionCase {
  std::string name;
  SamplerOptions options;
  double bias;  // allowed distance of the chain's exact mean and std from the data's
};

// Scalar data N(0.3, 0.5^2) under its optimal predictor, which is affine in x: every chain is then
// x_0 = a x_T + b + sum_k c_k z_k, exactly Gaussian. Its law follows from running the sampler on
// unit inputs (x_T = 1 or one z_k = 1, the rest 0).
struct ChainLaw {
  double mean, std;
};

EpsilonPredictor scalar_oracle(const TimestepGrid& grid, double mu, double s) {
  std::map<double, double> alpha_bar;
  for (int i = 0; i < grid.steps(); ++i) alpha_bar[grid.timesteps[i]] = grid.alpha_bar[i];
  return [=](const torch::Tensor& x, const torch::Tensor& t) {
    const double ab = alpha_bar.at(t[0].to(torch::kFloat64).item<double>());
    return (x - std::sqrt(ab) * mu) * (std::sqrt(1 - ab) / (ab * s * s + 1 - ab));
  };
}

ChainLaw chain_law(const SamplerOptions& options, double mu, double s) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const TimestepGrid grid =
      timestep_grid(schedule.table(), options.kind, options.steps, options.spacing);
  const int64_t inputs = options.steps + 1;  // row 0: all zero; row 1: x_T = 1; row 2 + k: z_k = 1
  auto x_T = torch::zeros({inputs, 1, 1, 1}, torch::kFloat64);
  x_T[1] = 1.0;
  const auto out = run_sampler(scalar_oracle(grid, mu, s), schedule, options, x_T, [&](int step) {
    auto z = torch::zeros({inputs, 1, 1, 1}, torch::kFloat64);
    z[step + 2] = 1.0;
    return z;
  }).view(-1);
  const double offset = out[0].item<double>();
  double variance = 0.0;
  for (int64_t k = 1; k < inputs; ++k) {
    const double c = out[k].item<double>() - offset;
    variance += c * c;
  }
  return {offset, std::sqrt(variance)};
}

class SamplerDistribution : public ::testing::TestWithParam<DistributionCase> {};

// 16,000 samples (4,000 images of 2x2) follow the chain's law within 4 standard errors (0.016
// for the mean, 0.011 for the std), and that law is within `bias` of the data's: the step
// counts are where the methods' own bias is small (measured 2026-12-02: euler_ancestral std
// 0.4842 at 200 karras steps, ddim eta 1 0.4826 at 200, dpmpp_2m_sde 0.5022 at 100 karras
// steps and 0.5150 at 50 trailing ones).
TEST_P(SamplerDistribution, ReachesTheDataDistribution) {
  const DistributionCase& test_case = GetParam();
  constexpr double mu = 0.3, s = 0.5;
  const SamplerOptions& options = test_case.options;
  const ChainLaw law = chain_law(options, mu, s);
  EXPECT_NEAR(law.mean, mu, test_case.bias);
  EXPECT_NEAR(law.std, s, test_case.bias);

  const NoiseSchedule schedule = linear_schedule(1000);
  const TimestepGrid grid =
      timestep_grid(schedule.table(), options.kind, options.steps, options.spacing);
  auto generator = at::detail::createCPUGenerator(99);
  int draws = 0;
  const auto samples = run_sampler(scalar_oracle(grid, mu, s), schedule, options,
                                   torch::randn({4000, 1, 2, 2}, generator), [&](int) {
                                     ++draws;
                                     return torch::randn({4000, 1, 2, 2}, generator);
                                   });
  EXPECT_EQ(draws, options.steps - 1);
  const double n = double(samples.numel());
  EXPECT_NEAR(samples.mean().item<double>(), law.mean, 4 * law.std / std::sqrt(n));
  EXPECT_NEAR(samples.std().item<double>(), law.std, 4 * law.std / std::sqrt(2 * (n - 1)));
}

INSTANTIATE_TEST_SUITE_P(
    Sampler, SamplerDistribution,
    ::testing::Values(
        DistributionCase{"euler_ancestral_karras200",
                         options_for(SamplerKind::euler_ancestral, 200, "karras"), 0.02},
        DistributionCase{"euler_ancestral_trailing200",
                         options_for(SamplerKind::euler_ancestral, 200, "trailing"), 0.02},
        DistributionCase{"dpmpp_2m_sde_karras100",
                         options_for(SamplerKind::dpmpp_2m_sde, 100, "karras"), 0.005},
        DistributionCase{"dpmpp_2m_sde_trailing50",
                         options_for(SamplerKind::dpmpp_2m_sde, 50, "trailing"), 0.02},
        DistributionCase{"ddim_eta1_uniform200",
                         options_for(SamplerKind::ddim, 200, "uniform", false, 1.0), 0.02}),
    [](const ::testing::TestParamInfo<DistributionCase>& info) { return info.param.name; });

// The first-order ancestral samplers lose spread at few steps and win it back as the steps grow,
// the deficit about halving per doubling (measured: euler_ancestral karras std 0.4416, 0.4693,
// 0.4842 at 50, 100, 200 steps); the SDE solver's law is within 0.03 of the data's from 20 steps
// on (0.5519, 0.5094, 0.5022 at 20, 50, 100 karras steps).
TEST(SamplerDistribution, StochasticSamplersApproachTheDataSpreadAsStepsGrow) {
  for (const auto& [kind, spacing, eta] :
       std::vector<std::tuple<SamplerKind, std::string, double>>{
           {SamplerKind::euler_ancestral, "karras", 0.0},
           {SamplerKind::euler_ancestral, "linspace", 0.0},
           {SamplerKind::ddim, "uniform", 1.0}}) {
    std::vector<double> deficits;
    for (const int steps : {50, 100, 200}) {
      const SamplerOptions options = options_for(kind, steps, spacing, false, eta);
      deficits.push_back(0.5 - chain_law(options, 0.3, 0.5).std);
    }
    for (int k = 0; k < 2; ++k) {
      EXPECT_GT(deficits[k], 0.0) << choice_name(kind);
      EXPECT_NEAR(deficits[k] / deficits[k + 1], 2.0, 0.4) << choice_name(kind) << " " << spacing;
    }
  }
  EXPECT_NEAR(chain_law(options_for(SamplerKind::dpmpp_2m_sde, 20, "karras"), 0.3, 0.5).std, 0.5,
              0.06);
  EXPECT_NEAR(chain_law(options_for(SamplerKind::dpmpp_2m_sde, 50, "karras"), 0.3, 0.5).std, 0.5,
              0.015);
}

// ---- diffusers' own scheduler tests ------------------------------------------------------

// diffusers' SchedulerCommonTest: dummy_sample_deter (arange(768) / 768 laid out [3, 8, 8, 4],
// permuted to [4, 3, 8, 8]) and dummy_model (sample * t / (t + 1)). Their full-loop tests
// (tests/schedulers/test_scheduler_{euler,heun,dpm_multi}.py) run 10 steps and compare the sum
// and mean of |x_0| with reference values, with the tolerances repeated below. This runs our
// solvers' steps (src/diffusion/solvers/) the way those loops drive a scheduler:
//   - Euler and Heun: the sample starts at dummy * init_noise_sigma (sigma_0), and each
//     iteration overwrites it with scale_model_input's output, y / sqrt(sigma^2 + 1), before the
//     model sees it and before step() continues from it. So each of our steps starts from the
//     overwritten y, and the model is given y itself; a Heun step's second evaluation sees the
//     Euler prediction scaled the same way, which is exactly our x there.
//   - DPM-Solver multistep: no scaling; the test's config ends the chain at sigma_min (the
//     schedule's t = 0) with a second-order step (final_sigmas_type sigma_min, lower_order_final
//     false), so the grid here ends at alpha_bar[0] instead of 1.
torch::Tensor diffusers_full_loop(SamplerKind kind, const TimestepGrid& grid, bool rescaled) {
  const SamplerOptions options = options_for(kind, grid.steps(), "uniform");
  torch::Tensor y = (torch::arange(768, torch::kFloat32).view({3, 8, 8, 4}) / 768.0)
                        .permute({3, 0, 1, 2})
                        .contiguous();
  if (rescaled) y = y * float(grid.sigma(0));
  int current = 0;
  const auto eps = [&](const torch::Tensor& x, int point) {
    const double t = grid.timesteps[point];
    // Our x at the step's start is y / sqrt(sigma^2 + 1) = their sample times sqrt(alpha_bar).
    const torch::Tensor input =
        rescaled && point == current ? x * (1.0 / std::sqrt(grid.alpha_bar[point])) : x;
    return GridOutput{input * (t / (t + 1)), {}};
  };
  const solvers::StepContext context{grid, options, eps, [](int) -> torch::Tensor {
                                       throw std::logic_error("noise");
                                     }};
  const auto solver = solvers::make_solver(kind);
  for (current = 0; current < grid.steps(); ++current) {
    torch::Tensor x = y;
    if (rescaled) {
      y = y * (1.0 / std::sqrt(1.0 + grid.sigma(current) * grid.sigma(current)));
      x = y * std::sqrt(grid.alpha_bar[current]);
    }
    const torch::Tensor next = solver->step(current, x, context).x;
    y = rescaled ? next * (1.0 / std::sqrt(grid.alpha_bar[current + 1])) : next;
  }
  return y;
}

TEST(DiffusersSchedulerTests, EulerFullLoop) {
  const NoiseSchedule schedule = linear_schedule(1100);
  const auto x = diffusers_full_loop(
      SamplerKind::euler, timestep_grid(schedule.table(), SamplerKind::euler, 10, Spacing::linspace),
      true);
  EXPECT_NEAR(x.abs().sum().item<double>(), 10.0807, 1e-2);
  EXPECT_NEAR(x.abs().mean().item<double>(), 0.0131, 1e-3);
  const auto karras = diffusers_full_loop(
      SamplerKind::euler, timestep_grid(schedule.table(), SamplerKind::euler, 10, Spacing::karras),
      true);
  EXPECT_NEAR(karras.abs().sum().item<double>(), 124.52299499511719, 1e-2);
  EXPECT_NEAR(karras.abs().mean().item<double>(), 0.16213932633399963, 1e-3);
}

TEST(DiffusersSchedulerTests, HeunFullLoop) {
  const NoiseSchedule schedule = linear_schedule(1100);
  const auto x = diffusers_full_loop(
      SamplerKind::heun, timestep_grid(schedule.table(), SamplerKind::heun, 10, Spacing::linspace), true);
  EXPECT_NEAR(x.abs().sum().item<double>(), 0.1233, 1e-2);
  EXPECT_NEAR(x.abs().mean().item<double>(), 0.0002, 1e-3);
  const auto karras = diffusers_full_loop(
      SamplerKind::heun, timestep_grid(schedule.table(), SamplerKind::heun, 10, Spacing::karras), true);
  EXPECT_NEAR(karras.abs().sum().item<double>(), 0.00015, 1e-2);
  EXPECT_NEAR(karras.abs().mean().item<double>(), 1.9869554535034695e-07, 1e-2);
}

TEST(DiffusersSchedulerTests, DpmSolverMultistepFullLoop) {
  const NoiseSchedule schedule = linear_schedule(1000);
  TimestepGrid grid = timestep_grid(schedule.table(), SamplerKind::dpmpp_2m, 10, Spacing::linspace);
  grid.alpha_bar.back() = schedule.table().alpha_bar[0];  // final_sigmas_type sigma_min
  const auto x = diffusers_full_loop(SamplerKind::dpmpp_2m, grid, false);
  EXPECT_NEAR(x.abs().mean().item<double>(), 0.3301, 1e-3);
}

// ---- cost, noise and batch invariance of every sampler -----------------------------------

TEST(SamplerCost, EvaluationsAndNoiseDrawsAreAsDocumented) {
  const NoiseSchedule schedule = linear_schedule(1000);
  for (const SamplerInfo& info : all_samplers()) {
    for (const int steps : {1, 2, 7}) {
      int calls = 0;
      std::vector<int> draws;
      const EpsilonPredictor model = [&](const torch::Tensor& x, const torch::Tensor&) {
        ++calls;
        return torch::tanh(x) * 0.5;
      };
      const auto x = run_sampler(model, schedule, options_for(info.kind, steps, "trailing", true),
                                 torch::randn({2, 1, 3, 3}), [&](int step) {
                                   draws.push_back(step);
                                   return torch::randn({2, 1, 3, 3});
                                 });
      EXPECT_EQ(calls, sampler_evaluations(info.kind, steps)) << info.name << " " << steps;
      const int expected_draws = info.stochastic ? steps - 1 : 0;
      ASSERT_EQ(int(draws.size()), expected_draws) << info.name << " " << steps;
      for (int k = 0; k < expected_draws; ++k) EXPECT_EQ(draws[k], k) << info.name;
      // Every sampler ends with its clipped prediction of x0.
      EXPECT_LE(x.abs().max().item<double>(), 1.0) << info.name;
    }
  }
}

TEST(SamplerCost, ImageKIsTheSameWhateverTheBatchForEverySampler) {
  const NoiseSchedule schedule = linear_schedule(1000);
  const EpsilonPredictor model = [](const torch::Tensor& x, const torch::Tensor& t) {
    return torch::tanh(x) * 0.5 + t.to(torch::kFloat32).view({-1, 1, 1, 1}) * 0.0005;
  };
  for (const SamplerInfo& info : all_samplers()) {
    const std::string spacing = info.sigma_space ? "karras" : "uniform";
    const SamplerOptions options = options_for(info.kind, 6, spacing, true);
    const auto whole = sample_images(model, schedule, options, 0, 4, {1, 3, 3}, 5, torch::kCPU);
    const auto first = sample_images(model, schedule, options, 0, 1, {1, 3, 3}, 5, torch::kCPU);
    const auto rest = sample_images(model, schedule, options, 1, 3, {1, 3, 3}, 5, torch::kCPU);
    EXPECT_TRUE(torch::equal(whole, torch::cat({first, rest}))) << info.name;
  }
}

}  // namespace
}  // namespace ddpm
