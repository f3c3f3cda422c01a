// Importance-sampled timesteps (timestep_resampler.h): the probabilities against sqrt(E[L^2]),
// the reweighted objective against the uniform one, the inverse CDF, and the checkpoint state.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "ddpm/error.h"
#include "test_support.h"
#include "train/timestep_resampler.h"

namespace ddpm {
namespace {

// sigma_t of a synthetic loss profile: L_t = sigma_t |z|, so sqrt(E[L_t^2]) = sigma_t.
double profile(int64_t t) { return 0.2 + std::pow(double(t) / 10.0, 2.0) + (t == 3 ? 2.0 : 0.0); }

constexpr int64_t kT = 12;

TEST(TimestepResampler, UniformUntilEveryTimestepHasItsHistory) {
  TimestepResampler resampler(kT);
  for (int round = 0; round < TimestepResampler::kHistory; ++round) {
    for (int64_t t = 0; t < kT; ++t) {
      EXPECT_FALSE(resampler.warmed_up());
      for (const double p : resampler.probabilities()) EXPECT_DOUBLE_EQ(p, 1.0 / kT);
      resampler.update({t}, {profile(t)});
    }
  }
  EXPECT_TRUE(resampler.warmed_up());
  // Constant losses: p_t = 0.999 sigma_t / sum sigma + 0.001 / T exactly.
  double sum = 0.0;
  for (int64_t t = 0; t < kT; ++t) sum += profile(t);
  const std::vector<double> p = resampler.probabilities();
  for (int64_t t = 0; t < kT; ++t) {
    EXPECT_NEAR(p[t], 0.999 * profile(t) / sum + 0.001 / kT, 1e-15) << t;
  }
  // Non-finite losses are left out.
  resampler.update({0, 1}, {std::nan(""), INFINITY});
  EXPECT_EQ(resampler.probabilities(), p);
}

TEST(TimestepResampler, ProbabilitiesFollowTheRootMeanSquareLoss) {
  TimestepResampler resampler(kT);
  std::mt19937_64 random(5);
  std::normal_distribution<double> normal;
  std::vector<double> average(kT, 0.0);
  const int rounds = 4000;
  for (int round = 0; round < rounds + 50; ++round) {
    for (int64_t t = 0; t < kT; ++t) resampler.update({t}, {profile(t) * std::abs(normal(random))});
    if (round < 50) continue;
    const std::vector<double> p = resampler.probabilities();
    for (int64_t t = 0; t < kT; ++t) average[t] += p[t] / rounds;
  }
  double sum = 0.0;
  for (int64_t t = 0; t < kT; ++t) sum += profile(t);
  for (int64_t t = 0; t < kT; ++t) {
    const double expected = 0.999 * profile(t) / sum + 0.001 / kT;
    EXPECT_NEAR(average[t] / expected, 1.0, 0.03) << "t = " << t;
  }
}

TEST(TimestepResampler, ReweightedObjectiveHasTheUniformExpectation) {
  TimestepResampler resampler(kT);
  for (int round = 0; round < TimestepResampler::kHistory; ++round) {
    for (int64_t t = 0; t < kT; ++t) resampler.update({t}, {profile(t) * (1.0 + 0.1 * round)});
  }
  // E_{t ~ p}[L_t / (T p_t)] = (1 / T) sum_t L_t for any losses L_t; here L_t = 1 + t.
  std::mt19937_64 random(9);
  std::uniform_real_distribution<double> uniform;
  std::vector<double> u(400000);
  for (double& value : u) value = uniform(random);
  const TimestepResampler::Draws draws = resampler.draw(u);
  double weighted = 0.0, squares = 0.0;
  std::vector<double> frequency(kT, 0.0);
  for (size_t i = 0; i < u.size(); ++i) {
    const double value = draws.weight[i] * (1.0 + double(draws.t[i]));
    weighted += value / double(u.size());
    squares += value * value / double(u.size());
    frequency[draws.t[i]] += 1.0 / double(u.size());
  }
  const double uniform_mean = (1.0 + double(kT)) / 2.0;
  const double standard_error = std::sqrt((squares - weighted * weighted) / double(u.size()));
  EXPECT_NEAR(weighted, uniform_mean, 4.0 * standard_error);
  // The draws follow p (the inverse CDF), and each weight is 1 / (T p_t).
  const std::vector<double> p = resampler.probabilities();
  for (int64_t t = 0; t < kT; ++t) {
    EXPECT_NEAR(frequency[t], p[t], 4.0 * std::sqrt(p[t] / double(u.size()))) << t;
  }
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_DOUBLE_EQ(draws.weight[i], 1.0 / (kT * p[draws.t[i]]));
  }
  // The edges of the CDF: u = 0 is t = 0, u just below 1 the last t.
  EXPECT_EQ(resampler.draw({0.0}).t[0], 0);
  EXPECT_EQ(resampler.draw({std::nextafter(1.0, 0.0)}).t[0], kT - 1);
}

TEST(TimestepResampler, StateRoundTripsAndBadStatesAreRefused) {
  TimestepResampler resampler(kT);
  for (int64_t t = 0; t < kT; ++t) resampler.update({t, t}, {profile(t), 2.0 * profile(t)});
  TimestepResampler restored(kT);
  restored.restore(resampler.state(), "test");
  EXPECT_EQ(restored.probabilities(), resampler.probabilities());
  EXPECT_TRUE(torch::equal(restored.state().at("history"), resampler.state().at("history")));
  TimestepResampler other(kT + 1);
  EXPECT_CONTAINS(testing::error_of([&] { other.restore(resampler.state(), "checkpoint 'x'"); }),
                  "checkpoint 'x' has no loss history of 13 timesteps");
  TensorMap bad = resampler.state();
  bad["counts"][0] = 11;
  EXPECT_CONTAINS(testing::error_of([&] { restored.restore(bad, "checkpoint 'y'"); }),
                  "count of 11");
}

TEST(TimestepResampler, UniformsDependOnTheExampleNotTheSplit) {
  const std::vector<double> whole = timestep_uniforms({3, 7, 0}, 8);
  const std::vector<double> second_half = timestep_uniforms({3, 7, 4}, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(whole[4 + i], second_half[i]);
  for (const double u : whole) {
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
  EXPECT_NE(timestep_uniforms({3, 8, 0}, 1)[0], whole[0]);
}

}  // namespace
}  // namespace ddpm
