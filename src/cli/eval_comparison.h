// The comparison `ddpm eval` runs: each side's feature statistics (a folder through the
// feature network, or a stats file), the metrics asked for, and the per-class figures.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "eval/feature_net.h"
#include "eval/feature_stats.h"
#include "eval/metrics.h"

namespace ddpm::cli {

// The metrics of --metrics ("fid,kid,pr") and precision/recall's k.
struct MetricChoice {
  bool fid = false, kid = false, precision_recall = false;
  int pr_k = 3;
};
// Throws ddpm::Error (usage) for an unknown metric or none.
MetricChoice parse_metrics(const std::string& list, int pr_k);

// The statistics of one side (`role`: "real" or "generated"): a folder run through the network
// now, or a stats file made with the same network. Too few images for a metric asked for is an
// error naming the side and the minimum.
FeatureStats side_stats(const std::string& role, const std::filesystem::path& path,
                        FeatureNet& net, int batch, const MetricChoice& metrics);

// Real and generated images of different sizes or channel counts are almost always a mistake
// (samples of another config); resizing both would let FID measure the resizing. Throws
// ddpm::Error (usage) for them.
void check_shapes(const FeatureStats& real, const FeatureStats& generated,
                  const FeatureNetInput& input);

// The metrics asked for, added to `result`; each side's tensors are moved to `device`.
void add_metrics(nlohmann::json& result, const FeatureStats& real, const FeatureStats& generated,
                 const MetricChoice& metrics, const KidOptions& kid_options,
                 torch::Device device);

// --per-class: the class subfolders of the generated folder (ddpm sample's layout with
// several classes), each against the real folder's subfolder of the same name; without class
// subfolders, the feature network's classifier labels the generated images. One entry per
// class: image counts, the generated share ("fraction") and the metrics its counts allow.
nlohmann::json per_class_metrics(const std::filesystem::path& real,
                                 const std::filesystem::path& generated, FeatureNet& net,
                                 int batch, const MetricChoice& metrics,
                                 const KidOptions& kid_options, torch::Device device,
                                 bool allow_size_mismatch);

}  // namespace ddpm::cli
