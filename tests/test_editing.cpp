// Editing with a model, on exact oracles: RePaint's inpainting against the conditional Gaussian,
// DDIM inversion's round trip, image-to-image's partial chain; RePaint's timesteps against
// diffusers' RePaintScheduler (tests/data/repaint_timesteps.json, dev/repaint_reference.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ddpm/error.h"
#include "diffusion/image_chains.h"
#include "diffusion/inversion.h"
#include "diffusion/repaint.h"
#include "test_support.h"

namespace ddpm {
namespace {

constexpr auto kDouble = torch::kFloat64;

// Gaussian data x0 ~ N(mu, S) over the 6 pixels of a 1 x 2 x 3 image, with S = F F^T + 0.05 I
// (two shared factors: strongly correlated pixels). Then x_t = a x0 + s eps is Gaussian and the
// optimal eps is E[eps | x_t] = s (a^2 S + s^2 I)^-1 (x_t - a mu), exactly.
struct GaussianImages {
  torch::Tensor mu = torch::tensor({0.3, -0.2, 0.1, 0.0, 0.4, -0.3}, kDouble);
  torch::Tensor cov;
  const NoiseSchedule& schedule;

  explicit GaussianImages(const NoiseSchedule& noise_schedule) : schedule(noise_schedule) {
    const auto factors = torch::tensor({{0.5, 0.1}, {0.45, -0.2}, {0.4, 0.3}, {0.1, 0.5},
                                        {0.2, 0.45}, {-0.1, 0.4}},
                                       kDouble);
    cov = factors.matmul(factors.t()) + 0.05 * torch::eye(6, kDouble);
  }

  EpsilonPredictor predictor() const {
    return [this](const torch::Tensor& x, const torch::Tensor& t) {
      const double ab = schedule.table().alpha_bar[t[0].item<int64_t>()];
      const double a = std::sqrt(ab), s = std::sqrt(1.0 - ab);
      const auto m = cov * ab + torch::eye(6, kDouble) * (1.0 - ab);
      const auto flat = x.reshape({x.size(0), 6}).to(kDouble);
      return (torch::linalg_solve(m, (flat - a * mu).t()).t() * s).reshape(x.sizes());
    };
  }
};

NoiseSchedule short_schedule(int timesteps) {
  DiffusionConfig diffusion;
  diffusion.timesteps = timesteps;
  diffusion.beta_end = 0.2;  // T steps from data to about pure noise
  return NoiseSchedule(diffusion);
}

SamplerOptions exact_options(SamplerKind kind, int steps) {
  SamplerOptions options;
  options.kind = kind;
  options.steps = steps;
  options.clip_denoised = false;
  options.variance = Variance::fixed_small;
  return options;
}

TEST(RepaintTimesteps, AreDiffusersRePaintSchedulerLists) {
  std::ifstream file(std::string(DDPM_SOURCE_DIR) + "/tests/data/repaint_timesteps.json");
  const auto reference = nlohmann::json::parse(file);
  ASSERT_GE(reference["cases"].size(), 5u);
  for (const auto& item : reference["cases"]) {
    const auto expected = item["timesteps"].get<std::vector<int64_t>>();
    const int steps = item["steps"], jump = item["jump_length"], passes = item["jump_n_sample"];
    EXPECT_EQ(repaint_timesteps(item["timesteps_total"], steps, jump, passes), expected)
        << item["timesteps_total"] << " " << steps << " " << jump << " " << passes;
  }
  EXPECT_EQ(repaint_evaluations(20, 10, 3, 2), 19);  // 28 entries, 9 of them going up
  EXPECT_THROW(repaint_timesteps(1000, 10, 0, 1), Error);
}

// Mean and covariance of the unknown pixels over the samples, against the conditional Gaussian
// of the unknown pixels given the known ones; returns the largest error of the mean and of
// the covariance.
std::pair<double, double> inpainting_errors(int jump_n_sample, int64_t count) {
  const NoiseSchedule schedule = short_schedule(50);
  const GaussianImages data(schedule);
  const std::vector<int64_t> known_pixels = {0, 1, 2}, unknown_pixels = {3, 4, 5};
  const auto k = torch::tensor(known_pixels), u = torch::tensor(unknown_pixels);
  const auto known_values = torch::tensor({0.8, 0.6, 0.9}, kDouble);  // about 1.5 sd off mu
  auto input = data.mu.clone();
  input.index_put_({k}, known_values);
  const auto mask = torch::tensor({1.0, 1.0, 1.0, 0.0, 0.0, 0.0}, kDouble).reshape({1, 1, 2, 3});

  const auto s_uk = data.cov.index({u}).index({torch::indexing::Slice(), k});
  const auto s_kk = data.cov.index({k}).index({torch::indexing::Slice(), k});
  const auto gain = torch::linalg_solve(s_kk, s_uk.t()).t();
  const auto mean = data.mu.index({u}) + gain.matmul(known_values - data.mu.index({k}));
  const auto cov = data.cov.index({u}).index({torch::indexing::Slice(), u}) - gain.matmul(s_uk.t());

  auto generator = at::detail::createCPUGenerator(17);
  const auto x_T = torch::randn({count, 1, 2, 3}, generator, kDouble);
  const auto x0 = run_repaint(data.predictor(), schedule, exact_options(SamplerKind::ddpm, 50),
                              {5, jump_n_sample}, x_T, input.reshape({1, 1, 2, 3}).expand({count, 1, 2, 3}),
                              mask.expand({count, 1, 2, 3}), [&](int) {
                                return torch::randn({count, 1, 2, 3}, generator, kDouble);
                              });
  const auto flat = x0.reshape({count, 6});
  EXPECT_TRUE(torch::equal(flat.index({torch::indexing::Slice(), k}),
                           known_values.expand({count, 3})));  // the known pixels are the input
  const auto unknown = flat.index({torch::indexing::Slice(), u});
  const auto centred = unknown - unknown.mean(0);
  const auto sample_cov = centred.t().matmul(centred) / double(count - 1);
  return {(unknown.mean(0) - mean).abs().max().item<double>(),
          (sample_cov - cov).abs().max().item<double>()};
}

// RePaint (Lugmayr et al. 2022) samples the unknown pixels from their conditional law given the
// known ones, and resampling is what makes it so: with jump_n_sample 1 the known pixels only
// reach the unknown ones through the model, and the mean stays biased. Measured (8,000 samples,
// T = 50): see the printed errors; standard error of a mean ~0.006, of a covariance ~0.004.
TEST(Repaint, SamplesTheConditionalGaussianAndResamplingGetsCloser) {
  const auto [mean_resampled, cov_resampled] = inpainting_errors(10, 8000);
  const auto [mean_plain, cov_plain] = inpainting_errors(1, 8000);
  std::printf("RePaint on Gaussian data: mean error %.4f (jump_n_sample 10) vs %.4f (1); "
              "covariance error %.4f vs %.4f\n",
              mean_resampled, mean_plain, cov_resampled, cov_plain);
  EXPECT_LT(mean_resampled, 0.03);
  EXPECT_LT(cov_resampled, 0.02);
  EXPECT_GT(mean_plain, 2.0 * mean_resampled);
}

// DDIM inversion then DDIM sampling on the same grid returns the input up to the inversion's
// approximation, which is first order in the step: the error halves as the steps double.
TEST(Inversion, RoundTripConvergesAtFirstOrder) {
  const NoiseSchedule schedule{DiffusionConfig{}};  // DDPM's: T = 1000, linear 1e-4 to 0.02
  const GaussianImages data(schedule);
  auto generator = at::detail::createCPUGenerator(3);
  const auto images =
      (data.mu + torch::randn({4, 6}, generator, kDouble) * 0.4).reshape({4, 1, 2, 3});
  std::vector<double> errors;
  for (const int steps : {20, 40, 80, 160}) {
    const SamplerOptions options = exact_options(SamplerKind::ddim, steps);
    const auto x_T = invert_images(data.predictor(), schedule, options, images);
    const auto back = run_sampler(data.predictor(), schedule, options, x_T,
                                  [](int) -> torch::Tensor { throw std::logic_error("noise"); });
    errors.push_back((back - images).abs().max().item<double>());
  }
  std::printf("inversion round trip, max error at 20, 40, 80, 160 steps: %.3g %.3g %.3g %.3g\n",
              errors[0], errors[1], errors[2], errors[3]);
  for (size_t k = 1; k < errors.size(); ++k) {
    EXPECT_NEAR(std::log2(errors[k - 1] / errors[k]), 1.0, 0.25) << k;
  }
  SamplerOptions ddpm = exact_options(SamplerKind::ddpm, 10);
  EXPECT_THROW(invert_images(data.predictor(), schedule, ddpm, images), Error);
}

// Image-to-image runs the last floor(strength x steps) steps from the input noised to the
// first of them; at strength 1 from (almost) pure noise, the samples have the data's law.
TEST(ImageToImage, RunsThePartOfTheChainTheStrengthSaysFromTheNoisedInput) {
  EXPECT_EQ(first_step_for_strength(50, 0.4), 30);  // 20 steps run
  EXPECT_EQ(first_step_for_strength(10, 1.0), 0);
  EXPECT_EQ(first_step_for_strength(100, 0.29), 72);  // floor(28.999...) = 28, as Python's int()
  EXPECT_THROW(first_step_for_strength(10, 0.05), Error);
  EXPECT_THROW(first_step_for_strength(10, 1.5), Error);
  EXPECT_THROW(first_step_for_strength(10, 0.0), Error);

  const NoiseSchedule schedule = short_schedule(200);  // alpha_bar_T ~ 1e-9: x_T is noise
  const GaussianImages data(schedule);
  const SamplerOptions options = exact_options(SamplerKind::ddim, 50);
  const int64_t count = 4000;
  const auto input = torch::full({count, 1, 2, 3}, 0.9, kDouble);
  auto generator = at::detail::createCPUGenerator(5);
  const auto noise = torch::randn({count, 1, 2, 3}, generator, kDouble);
  int calls = 0;
  const auto none = [](int) -> torch::Tensor { throw std::logic_error("noise"); };
  const auto count_calls = [&](int step, int total, const torch::Tensor&, const torch::Tensor&) {
    EXPECT_EQ(step, calls++);
    EXPECT_EQ(total, 5);
  };
  const auto light =
      run_sampler_from(data.predictor(), schedule, options, 45, input, noise, none, count_calls);
  EXPECT_EQ(calls, 5);
  const auto full = run_sampler_from(data.predictor(), schedule, options, 0, input, noise, none);
  const double light_distance = (light - input).abs().mean().item<double>();
  const double full_distance = (full - input).abs().mean().item<double>();
  EXPECT_LT(light_distance, 0.5 * full_distance);
  // Strength 1: the data's mean and spread, whatever the input.
  const auto flat = full.reshape({count, 6});
  EXPECT_LT((flat.mean(0) - data.mu).abs().max().item<double>(), 0.05);
  EXPECT_LT((flat.var(0) - data.cov.diagonal()).abs().max().item<double>(), 0.05);
}

// Whatever the prediction type, the kept pixels of an inpainted image are the input's, and
// image k is the same in any batch.
TEST(Repaint, KeptPixelsAreTheInputsForEveryPredictionTypeAndBatch) {
  const NoiseSchedule schedule = short_schedule(20);
  for (const Prediction prediction : {Prediction::eps, Prediction::x0, Prediction::v}) {
    SamplerOptions options = exact_options(SamplerKind::ddpm, 10);
    options.prediction = prediction;
    options.clip_denoised = true;
    const EpsilonPredictor model = [](const torch::Tensor& x, const torch::Tensor& t) {
      return torch::tanh(x) * 0.5 + t.to(torch::kFloat32).view({-1, 1, 1, 1}) * 0.01;
    };
    ChainStart start;
    start.init = torch::rand({3, 1, 4, 4}) * 2 - 1;
    start.mask = (torch::rand({3, 1, 4, 4}) > 0.5).to(torch::kFloat32);
    start.repaint = {3, 2};
    const auto all = sample_images(model, schedule, options, 0, 3, {1, 4, 4}, 9, torch::kCPU, {},
                                   start);
    const auto keep = start.mask > 0.5;
    EXPECT_TRUE(torch::equal(all.masked_select(keep), start.init.masked_select(keep)));
    ChainStart last = start;
    last.init = start.init.slice(0, 2, 3);
    last.mask = start.mask.slice(0, 2, 3);
    EXPECT_TRUE(torch::equal(all.slice(0, 2, 3), sample_images(model, schedule, options, 2, 1,
                                                               {1, 4, 4}, 9, torch::kCPU, {}, last)));
  }
  SamplerOptions euler = exact_options(SamplerKind::euler, 10);
  ChainStart start;
  start.init = torch::zeros({1, 1, 4, 4});
  start.mask = torch::ones({1, 1, 4, 4});
  EXPECT_THROW(sample_images([](const torch::Tensor& x, const torch::Tensor&) { return x; },
                             schedule, euler, 0, 1, {1, 4, 4}, 1, torch::kCPU, {}, start),
               Error);
}

}  // namespace
}  // namespace ddpm
