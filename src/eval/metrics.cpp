// FID, KID, precision and recall over feature sets; see metrics.h for the definitions.
#include "eval/metrics.h"

#include <cmath>
#include <sstream>

#include "ddpm/error.h"

namespace ddpm {
namespace {

// Rows of a distance block at a time, so memory stays near kBlockElements doubles.
constexpr int64_t kBlockElements = int64_t{1} << 24;

Error metric_error(const std::string& message) { return Error(ErrorKind::runtime, message); }

std::string shape_text(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << tensor.sizes();
  return out.str();
}

void check_sets(const torch::Tensor& a, const torch::Tensor& b, int64_t min_rows,
                const char* metric) {
  if (a.dim() != 2 || b.dim() != 2 || a.size(1) != b.size(1) || a.size(1) < 1) {
    throw metric_error(std::string(metric) + " needs two feature sets [N, D] of the same D, got " +
                       shape_text(a) + " and " + shape_text(b));
  }
  if (a.size(0) < min_rows || b.size(0) < min_rows) {
    throw metric_error(std::string(metric) + " needs at least " + std::to_string(min_rows) +
                       " feature vectors per set, got " + std::to_string(a.size(0)) + " and " +
                       std::to_string(b.size(0)));
  }
}

// S^(1/2) of a symmetric positive semi-definite S through S = V diag(w) V^T.
torch::Tensor symmetric_sqrt(const torch::Tensor& matrix) {
  const auto [eigenvalues, eigenvectors] = torch::linalg_eigh((matrix + matrix.t()) / 2);
  return eigenvectors.mm(torch::diag(eigenvalues.clamp_min(0).sqrt())).mm(eigenvectors.t());
}

// (x·y / D + 1)³ for every pair of rows.
torch::Tensor polynomial_kernel(const torch::Tensor& x, const torch::Tensor& y) {
  return (x.mm(y.t()) / double(x.size(1)) + 1).pow(3);
}

// ||a_i - b_j||² for rows a_i of `a` [m, D] and b_j of `b` [n, D], as ||a||² + ||b||² - 2 a·b.
torch::Tensor squared_distances(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor a2 = a.pow(2).sum(1, true);
  const torch::Tensor b2 = b.pow(2).sum(1).unsqueeze(0);
  return (a2 + b2 - 2 * a.mm(b.t())).clamp_min(0);
}

int64_t block_rows(int64_t columns) { return std::max<int64_t>(1, kBlockElements / columns); }

// The fraction of rows of `queries` within radius[j] of some row j of `points`.
double fraction_inside(const torch::Tensor& queries, const torch::Tensor& points,
                       const torch::Tensor& radii) {
  const torch::Tensor squared_radii = radii.pow(2).unsqueeze(0);
  const int64_t step = block_rows(points.size(0));
  int64_t inside = 0;
  for (int64_t first = 0; first < queries.size(0); first += step) {
    const torch::Tensor block = queries.slice(0, first, first + step);
    inside += (squared_distances(block, points) <= squared_radii).any(1).sum().item<int64_t>();
  }
  return double(inside) / double(queries.size(0));
}

}  // namespace

double frechet_distance(const torch::Tensor& mean1, const torch::Tensor& covariance1,
                        const torch::Tensor& mean2, const torch::Tensor& covariance2) {
  const int64_t dim = mean1.numel();
  for (const auto* covariance : {&covariance1, &covariance2}) {
    if (covariance->dim() != 2 || covariance->size(0) != dim || covariance->size(1) != dim) {
      throw metric_error("Fréchet distance: means of " + std::to_string(dim) +
                         " values need covariances [" + std::to_string(dim) + ", " +
                         std::to_string(dim) + "], got " + shape_text(*covariance));
    }
  }
  if (mean1.dim() != 1 || mean2.dim() != 1 || mean2.numel() != dim) {
    throw metric_error("Fréchet distance: means must be vectors of one length, got " +
                       shape_text(mean1) + " and " + shape_text(mean2));
  }
  const torch::Tensor s1 = covariance1.to(torch::kFloat64);
  const torch::Tensor s2 = covariance2.to(covariance1.device(), torch::kFloat64);
  const torch::Tensor difference =
      mean1.to(torch::kFloat64) - mean2.to(mean1.device(), torch::kFloat64);
  const torch::Tensor root1 = symmetric_sqrt(s1);
  const torch::Tensor middle = root1.mm(s2).mm(root1);
  const torch::Tensor eigenvalues = torch::linalg_eigvalsh((middle + middle.t()) / 2);
  const double trace_sqrt = eigenvalues.clamp_min(0).sqrt().sum().item<double>();
  return difference.dot(difference).item<double>() + s1.trace().item<double>() +
         s2.trace().item<double>() - 2 * trace_sqrt;
}

double mmd2_unbiased(const torch::Tensor& x, const torch::Tensor& y) {
  check_sets(x, y, kMinImagesKid, "KID");
  const torch::Tensor a = x.to(torch::kFloat64);
  const torch::Tensor b = y.to(a.device(), torch::kFloat64);
  const double m = double(a.size(0)), n = double(b.size(0));
  const torch::Tensor kxx = polynomial_kernel(a, a), kyy = polynomial_kernel(b, b);
  const double within_x = (kxx.sum() - kxx.diagonal().sum()).item<double>() / (m * (m - 1));
  const double within_y = (kyy.sum() - kyy.diagonal().sum()).item<double>() / (n * (n - 1));
  const double across = polynomial_kernel(a, b).sum().item<double>() / (m * n);
  return within_x + within_y - 2 * across;
}

KidResult kernel_inception_distance(const torch::Tensor& real, const torch::Tensor& generated,
                                    const KidOptions& options) {
  check_sets(real, generated, kMinImagesKid, "KID");
  if (options.subsets < 1 || options.subset_size < kMinImagesKid) {
    throw Error(ErrorKind::usage, "KID needs at least 1 subset of at least " +
                                      std::to_string(kMinImagesKid) + " rows");
  }
  KidResult result;
  result.subset_size =
      std::min<int64_t>({options.subset_size, real.size(0), generated.size(0)});
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  std::vector<double> estimates;
  for (int subset = 0; subset < options.subsets; ++subset) {
    const auto pick = [&](const torch::Tensor& set) {
      const torch::Tensor rows = torch::randperm(set.size(0), generator, torch::kLong)
                                     .slice(0, 0, result.subset_size)
                                     .to(set.device());
      return set.index_select(0, rows);
    };
    const torch::Tensor x = pick(real);
    estimates.push_back(mmd2_unbiased(x, pick(generated)));
  }
  double sum = 0;
  for (const double value : estimates) sum += value;
  result.mean = sum / double(estimates.size());
  double squares = 0;
  for (const double value : estimates) squares += (value - result.mean) * (value - result.mean);
  result.std = std::sqrt(squares / double(estimates.size()));
  return result;
}

torch::Tensor knn_radii(const torch::Tensor& points, int k) {
  check_sets(points, points, min_images_precision_recall(k), "k-nearest-neighbour radii");
  if (k < 1) throw Error(ErrorKind::usage, "k must be >= 1, got " + std::to_string(k));
  const torch::Tensor wide = points.to(torch::kFloat64);
  const int64_t step = block_rows(wide.size(0));
  std::vector<torch::Tensor> radii;
  for (int64_t first = 0; first < wide.size(0); first += step) {
    const torch::Tensor distances = squared_distances(wide.slice(0, first, first + step), wide);
    // The point itself is at distance 0, so the (k+1)-th smallest is the k-th nearest other.
    radii.push_back(std::get<0>(distances.kthvalue(k + 1, 1)).sqrt());
  }
  return torch::cat(radii);
}

PrecisionRecall precision_recall(const torch::Tensor& real, const torch::Tensor& generated,
                                 int k) {
  if (k < 1) throw Error(ErrorKind::usage, "k must be >= 1, got " + std::to_string(k));
  check_sets(real, generated, min_images_precision_recall(k), "precision and recall");
  const torch::Tensor a = real.to(torch::kFloat64);
  const torch::Tensor b = generated.to(a.device(), torch::kFloat64);
  PrecisionRecall result;
  result.precision = fraction_inside(b, a, knn_radii(a, k));
  result.recall = fraction_inside(a, b, knn_radii(b, k));
  return result;
}

}  // namespace ddpm
