// Sample-quality metrics over two sets of feature vectors, real and generated (rows of [N, D]
// tensors, from a feature network, feature_net.h). Computed in float64 on the tensors' device.
//
//  - FID (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to the two sets,
//      ||mu1 - mu2||² + tr S1 + tr S2 - 2 tr sqrt(S1 S2).
//    tr sqrt(S1 S2) = Σ sqrt(λ_i) over the eigenvalues λ_i of the symmetric matrix
//    sqrt(S1) S2 sqrt(S1), which has the eigenvalues of S1 S2 (similar matrices); sqrt(S1) comes
//    from a symmetric eigendecomposition, negative eigenvalues of rounding are clamped to 0.
//  - KID (Bińkowski et al. 2018): the unbiased estimate of the squared MMD with the kernel
//    k(x, y) = (x·y / D + 1)³, on `subsets` pairs of random subsets of `subset_size` rows of
//    each set (drawn without replacement, from a generator seeded with `seed`), averaged; the
//    standard deviation is over the subsets (divides by the number of subsets).
//  - Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
//    around its points with the radius of the distance to the point's k-th nearest neighbour in
//    its own set. Precision: the fraction of generated points inside the real manifold
//    (distance <= radius); recall: the fraction of real points inside the generated manifold.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace ddpm {

// The fewest feature vectors per set each metric is defined for.
inline constexpr int64_t kMinImagesFid = 2;
inline constexpr int64_t kMinImagesKid = 2;
inline int64_t min_images_precision_recall(int k) { return int64_t{k} + 1; }

// Means [D], covariances [D, D] (any floating dtype; computed in float64).
double frechet_distance(const torch::Tensor& mean1, const torch::Tensor& covariance1,
                        const torch::Tensor& mean2, const torch::Tensor& covariance2);

// Unbiased squared MMD of two sets [m, D] and [n, D], m, n >= 2, polynomial kernel above.
double mmd2_unbiased(const torch::Tensor& x, const torch::Tensor& y);

struct KidOptions {
  int subsets = 100;
  int subset_size = 1000;  // capped at the smaller set's size
  uint64_t seed = 0;
};
struct KidResult {
  double mean = 0, std = 0;
  int64_t subset_size = 0;  // the size used, after the cap
};
KidResult kernel_inception_distance(const torch::Tensor& real, const torch::Tensor& generated,
                                    const KidOptions& options);

// The distance from each row of `points` [N, D] to its k-th nearest other row (N > k).
torch::Tensor knn_radii(const torch::Tensor& points, int k);

struct PrecisionRecall {
  double precision = 0, recall = 0;
};
PrecisionRecall precision_recall(const torch::Tensor& real, const torch::Tensor& generated,
                                 int k = 3);

}  // namespace ddpm
