// The features of a set of images with their mean and covariance (float64), and the stats file
// that keeps them, so a real folder is run through the feature network once and reused.
//
// A stats file is the zip archive of torch.save (see weights.h); Python reads it with
// torch.load(path, weights_only=True) as a dict:
//   "format": "ddpm-feature-stats", "version": 1,
//   "features": float32 [N, D], "mean": float64 [D], "covariance": float64 [D, D] (divides by
//   N - 1), "feature_net": FeatureNet::identifier(), "feature_net_file": the network's path when
//   the file was made, "source": the image folder, "image_shape": "HxWxC" or "mixed",
//   "skipped": unreadable files left out.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace ddpm {

struct FeatureStats {
  torch::Tensor features;    // float32 [N, D], CPU
  torch::Tensor mean;        // float64 [D]
  torch::Tensor covariance;  // float64 [D, D], unbiased (divides by N - 1)
  std::string feature_net;   // FeatureNet::identifier() of the network that made the features
  std::string feature_net_file;
  std::string source;        // the folder (or, once saved, what it was made from)
  std::string image_shape;   // FolderFeatures::image_shape
  int64_t skipped = 0;

  int64_t num_images() const { return features.size(0); }
  int64_t feature_dim() const { return features.size(1); }
};

// Mean and covariance of features [N, D], N >= 2, computed in float64; the other fields empty.
FeatureStats feature_stats(const torch::Tensor& features);

// Writes atomically (atomic_file.h). Throws ddpm::Error naming the path on failure.
void save_feature_stats(const FeatureStats& stats, const std::filesystem::path& path);

// Throws ddpm::Error (runtime) naming the file when it cannot be read, is not a stats file, is of
// a newer version, or its tensors do not fit together.
FeatureStats load_feature_stats(const std::filesystem::path& path);

}  // namespace ddpm
