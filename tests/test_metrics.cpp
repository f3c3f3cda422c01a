// FID, KID and precision/recall against closed forms and plain double-loop recomputations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ddpm/error.h"
#include "eval/metrics.h"

namespace ddpm {
namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kFloat64);

// A random orthogonal matrix (Q of a QR decomposition), float64.
torch::Tensor random_rotation(int64_t dim) {
  return std::get<0>(torch::linalg_qr(torch::randn({dim, dim}, kDouble)));
}

// ||mu1 - mu2||² + Σ (σ1 + σ2 - 2 √(σ1 σ2)) for diagonal covariances diag(σ1), diag(σ2).
double diagonal_closed_form(const std::vector<double>& mean1, const std::vector<double>& var1,
                            const std::vector<double>& mean2, const std::vector<double>& var2) {
  double total = 0;
  for (size_t i = 0; i < mean1.size(); ++i) {
    total += (mean1[i] - mean2[i]) * (mean1[i] - mean2[i]);
    total += var1[i] + var2[i] - 2 * std::sqrt(var1[i] * var2[i]);
  }
  return total;
}

TEST(FrechetDistance, MatchesTheClosedFormForDiagonalGaussians) {
  const std::vector<double> mean1 = {0.5, -1.0, 2.0, 0.0, 3.5}, mean2 = {0.0, 1.0, 2.5, -0.5, 3.0};
  const std::vector<double> var1 = {1.0, 0.25, 4.0, 2.0, 0.01}, var2 = {2.0, 0.25, 1.0, 0.5, 9.0};
  const double expected = diagonal_closed_form(mean1, var1, mean2, var2);
  const auto diagonal = [](const std::vector<double>& values) {
    return torch::diag(torch::tensor(values, kDouble));
  };
  const double got = frechet_distance(torch::tensor(mean1, kDouble), diagonal(var1),
                                      torch::tensor(mean2, kDouble), diagonal(var2));
  EXPECT_NEAR(got, expected, 1e-10 * expected);
}

TEST(FrechetDistance, MatchesTheClosedFormForRotatedCommutingCovariances) {
  // S_i = Q diag(σ_i) Q^T are full matrices with the diagonal case's distance (Q orthogonal,
  // the means rotated by Q too).
  torch::manual_seed(3);
  const int64_t dim = 12;
  std::vector<double> mean1, mean2, var1, var2;
  for (int64_t i = 0; i < dim; ++i) {
    mean1.push_back(std::sin(1.0 + i));
    mean2.push_back(std::cos(2.0 * i));
    var1.push_back(0.1 + 0.3 * i);
    var2.push_back(2.0 / (1.0 + i));
  }
  const torch::Tensor q = random_rotation(dim);
  const auto rotate = [&](const std::vector<double>& variances) {
    return q.mm(torch::diag(torch::tensor(variances, kDouble))).mm(q.t());
  };
  const double got = frechet_distance(q.mv(torch::tensor(mean1, kDouble)), rotate(var1),
                                      q.mv(torch::tensor(mean2, kDouble)), rotate(var2));
  const double expected = diagonal_closed_form(mean1, var1, mean2, var2);
  EXPECT_NEAR(got, expected, 1e-9 * expected);
}

TEST(FrechetDistance, MatchesTheTwoByTwoClosedFormForNonCommutingCovariances) {
  // For 2x2 M = S1 S2 with positive eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
  const double a[2][2] = {{2.0, 0.7}, {0.7, 1.0}}, b[2][2] = {{0.5, -0.3}, {-0.3, 3.0}};
  double m[2][2];
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) m[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
  }
  const double trace_m = m[0][0] + m[1][1], det_m = m[0][0] * m[1][1] - m[0][1] * m[1][0];
  const double trace_sqrt = std::sqrt(trace_m + 2 * std::sqrt(det_m));
  const double mean_term = (1.0 - 0.2) * (1.0 - 0.2) + (-2.0 - 1.0) * (-2.0 - 1.0);
  const double expected = mean_term + (a[0][0] + a[1][1]) + (b[0][0] + b[1][1]) - 2 * trace_sqrt;
  const torch::Tensor s1 = torch::tensor({2.0, 0.7, 0.7, 1.0}, kDouble).view({2, 2});
  const torch::Tensor s2 = torch::tensor({0.5, -0.3, -0.3, 3.0}, kDouble).view({2, 2});
  const double got = frechet_distance(torch::tensor({1.0, -2.0}, kDouble), s1,
                                      torch::tensor({0.2, 1.0}, kDouble), s2);
  EXPECT_NEAR(got, expected, 1e-12 * expected);
}

TEST(FrechetDistance, IsZeroForIdenticalFeatureSetsEvenWhenTheCovarianceIsSingular) {
  torch::manual_seed(4);
  for (const int64_t count : {500, 20}) {  // 20 rows of 32 features: rank-deficient covariance
    const torch::Tensor features = torch::randn({count, 32}, kDouble) * 3 + 1;
    const torch::Tensor mean = features.mean(0);
    const torch::Tensor centered = features - mean;
    const torch::Tensor covariance = centered.t().mm(centered) / double(count - 1);
    const double fid = frechet_distance(mean, covariance, mean, covariance);
    // Rounding only: the square root of the eigenvalues near 0 of a singular covariance
    // amplifies 1e-15 errors to about 1e-7.
    EXPECT_NEAR(fid, 0.0, count > 32 ? 1e-8 : 1e-5) << count << " rows";
  }
}

TEST(FrechetDistance, RefusesMismatchedShapes) {
  const auto mean = torch::zeros({3}, kDouble);
  EXPECT_THROW(frechet_distance(mean, torch::eye(3, kDouble), torch::zeros({4}, kDouble),
                                torch::eye(4, kDouble)),
               Error);
  EXPECT_THROW(frechet_distance(mean, torch::eye(2, kDouble), mean, torch::eye(3, kDouble)), Error);
}

// The unbiased MMD² written out with loops over rows.
double mmd2_by_loops(const torch::Tensor& x, const torch::Tensor& y) {
  const auto kernel = [&](const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j) {
    double dot = 0;
    for (int64_t c = 0; c < a.size(1); ++c) dot += a[i][c].item<double>() * b[j][c].item<double>();
    return std::pow(dot / double(a.size(1)) + 1, 3);
  };
  const int64_t m = x.size(0), n = y.size(0);
  double xx = 0, yy = 0, xy = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < m; ++j) xx += i == j ? 0 : kernel(x, i, x, j);
    for (int64_t j = 0; j < n; ++j) xy += kernel(x, i, y, j);
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) yy += i == j ? 0 : kernel(y, i, y, j);
  }
  return xx / double(m * (m - 1)) + yy / double(n * (n - 1)) - 2 * xy / double(m * n);
}

TEST(Kid, UnbiasedMmdMatchesALoopRecomputation) {
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({6, 3}, kDouble), y = torch::randn({9, 3}, kDouble) + 0.3;
  const double expected = mmd2_by_loops(x, y);
  EXPECT_NEAR(mmd2_unbiased(x, y), expected, 1e-12 * std::abs(expected));
  EXPECT_NEAR(mmd2_unbiased(x.to(torch::kFloat32), y.to(torch::kFloat32)), expected,
              1e-5 * std::abs(expected));
}

TEST(Kid, IsZeroInExpectationOnTwoHalvesOfOneSample) {
  // 40 samples of 400 points from one Gaussian, split in halves: the unbiased estimates average
  // to 0 within 3 standard errors. The biased (V-statistic) estimate would sit near
  // 2/200 (E k(x,x) - E k(x,y)), about 0.07 here, dozens of standard errors away.
  torch::manual_seed(6);
  const int repeats = 40;
  std::vector<double> estimates;
  for (int r = 0; r < repeats; ++r) {
    const torch::Tensor sample = torch::randn({400, 8}, kDouble);
    estimates.push_back(mmd2_unbiased(sample.slice(0, 0, 200), sample.slice(0, 200, 400)));
  }
  double mean = 0, squares = 0;
  for (const double value : estimates) mean += value / repeats;
  for (const double value : estimates) squares += (value - mean) * (value - mean);
  const double standard_error = std::sqrt(squares / (repeats - 1)) / std::sqrt(double(repeats));
  EXPECT_LT(std::abs(mean), 3 * standard_error) << "standard error " << standard_error;
  EXPECT_LT(standard_error, 0.01);  // the test can tell 0 from the biased estimate's 0.07
}

TEST(Kid, SubsetsAreSeededAndTellShiftedDistributionsApart) {
  torch::manual_seed(7);
  const torch::Tensor real = torch::randn({600, 8}, kDouble);
  const torch::Tensor same = torch::randn({500, 8}, kDouble);
  const torch::Tensor shifted = torch::randn({500, 8}, kDouble) + 0.5;
  const KidOptions options{20, 300, 11};
  const KidResult near = kernel_inception_distance(real, same, options);
  const KidResult far = kernel_inception_distance(real, shifted, options);
  EXPECT_EQ(near.subset_size, 300);
  EXPECT_LT(std::abs(near.mean), 3 * near.std + 1e-3);
  // A mean shift of 0.5 in each of 8 dimensions: the kernel's linear term alone gives
  // 3 |δ|² / D = 0.75.
  EXPECT_GT(far.mean, 0.5);
  EXPECT_GT(far.mean, 5 * far.std);
  const KidResult again = kernel_inception_distance(real, shifted, options);
  EXPECT_EQ(again.mean, far.mean);
  EXPECT_EQ(again.std, far.std);
  // The subset size is capped at the smaller set.
  EXPECT_EQ(kernel_inception_distance(real, same.slice(0, 0, 50), options).subset_size, 50);
  EXPECT_THROW(kernel_inception_distance(real, same.slice(0, 0, 1), options), Error);
}

// Points on the x axis at `positions`, rotated into 3-D by a fixed rotation: distances are kept.
torch::Tensor line_points(const std::vector<double>& positions, const torch::Tensor& rotation) {
  torch::Tensor points = torch::zeros({int64_t(positions.size()), 3}, kDouble);
  points.select(1, 0).copy_(torch::tensor(positions, kDouble));
  return points.mm(rotation.t());
}

TEST(PrecisionRecall, KnnRadiiOfPointsOnALine) {
  torch::manual_seed(8);
  const torch::Tensor points = line_points({0, 1, 3, 6, 10}, random_rotation(3));
  const torch::Tensor first = knn_radii(points, 1), second = knn_radii(points, 2);
  const std::vector<double> expected_first = {1, 1, 2, 3, 4}, expected_second = {3, 2, 3, 4, 7};
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(first[i].item<double>(), expected_first[i], 1e-6) << i;
    EXPECT_NEAR(second[i].item<double>(), expected_second[i], 1e-6) << i;
  }
  EXPECT_THROW(knn_radii(points, 5), Error);  // needs more than k points
}

TEST(PrecisionRecall, ConstructedSetsGiveTheKnownFractions) {
  // Real points 0..9 (k = 1: radius 1 each). Generated 0.9 and 1.2 lie inside the real manifold,
  // 50 and 50.5 do not: precision 2/4. Generated radii (k = 1) are 0.3, 0.3, 0.5, 0.5; only the
  // real point 1 lies within one of them: recall 1/10.
  torch::manual_seed(9);
  const torch::Tensor rotation = random_rotation(3);
  std::vector<double> integers;
  for (int i = 0; i < 10; ++i) integers.push_back(i);
  const torch::Tensor real = line_points(integers, rotation);
  const torch::Tensor generated = line_points({0.9, 1.2, 50, 50.5}, rotation);
  const PrecisionRecall result = precision_recall(real, generated, 1);
  EXPECT_DOUBLE_EQ(result.precision, 0.5);
  EXPECT_DOUBLE_EQ(result.recall, 0.1);
  const PrecisionRecall same = precision_recall(real, real, 3);
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
}

// Precision by brute force: sorted distances per point, then a loop over all pairs.
double precision_by_loops(const torch::Tensor& real, const torch::Tensor& generated, int k) {
  const auto distance = [](const torch::Tensor& a, int64_t i, const torch::Tensor& b, int64_t j) {
    double total = 0;
    for (int64_t c = 0; c < a.size(1); ++c) {
      const double d = a[i][c].item<double>() - b[j][c].item<double>();
      total += d * d;
    }
    return std::sqrt(total);
  };
  std::vector<double> radii;
  for (int64_t i = 0; i < real.size(0); ++i) {
    std::vector<double> row;
    for (int64_t j = 0; j < real.size(0); ++j) {
      if (j != i) row.push_back(distance(real, i, real, j));
    }
    std::sort(row.begin(), row.end());
    radii.push_back(row[k - 1]);
  }
  int64_t inside = 0;
  for (int64_t g = 0; g < generated.size(0); ++g) {
    for (int64_t i = 0; i < real.size(0); ++i) {
      if (distance(generated, g, real, i) <= radii[i]) {
        ++inside;
        break;
      }
    }
  }
  return double(inside) / double(generated.size(0));
}

TEST(PrecisionRecall, MatchBruteForceOnRandomSets) {
  torch::manual_seed(10);
  const torch::Tensor real = torch::randn({60, 4}, kDouble);
  const torch::Tensor generated = torch::randn({50, 4}, kDouble) * 1.5 + 0.3;
  const PrecisionRecall result = precision_recall(real, generated, 3);
  EXPECT_DOUBLE_EQ(result.precision, precision_by_loops(real, generated, 3));
  EXPECT_DOUBLE_EQ(result.recall, precision_by_loops(generated, real, 3));
  EXPECT_GT(result.precision, 0.0);
  EXPECT_LT(result.precision, 1.0);
}

}  // namespace
}  // namespace ddpm
