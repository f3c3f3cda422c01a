// Feature statistics and the stats file; see feature_stats.h.
#include "eval/feature_stats.h"

#include "ddpm/error.h"
#include "formats/weights.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "ddpm-feature-stats";
constexpr int64_t kVersion = 1;

Error stats_error(const fs::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "stats file '" + path.string() + "' " + reason);
}

class StatsReader {
 public:
  StatsReader(const fs::path& path, c10::impl::GenericDict dict) : path_(path), dict_(dict) {}

  c10::IValue get(const std::string& key) const {
    if (!dict_.contains(key)) throw stats_error(path_, "has no entry '" + key + "' (damaged?)");
    return dict_.at(key);
  }
  std::string string(const std::string& key) const {
    const c10::IValue value = get(key);
    if (!value.isString()) throw stats_error(path_, "entry '" + key + "' is not a string");
    return value.toStringRef();
  }
  int64_t integer(const std::string& key) const {
    const c10::IValue value = get(key);
    if (!value.isInt()) throw stats_error(path_, "entry '" + key + "' is not an int");
    return value.toInt();
  }
  torch::Tensor tensor(const std::string& key, torch::ScalarType type) const {
    const c10::IValue value = get(key);
    if (!value.isTensor() || value.toTensor().scalar_type() != type) {
      throw stats_error(path_, "entry '" + key + "' is not a " + c10::toString(type) + " tensor");
    }
    return value.toTensor();
  }

 private:
  fs::path path_;
  c10::impl::GenericDict dict_;
};

}  // namespace

FeatureStats feature_stats(const torch::Tensor& features) {
  if (features.dim() != 2 || features.size(0) < 2 || features.size(1) < 1) {
    throw Error(ErrorKind::runtime, "feature statistics need features [N, D] with N >= 2");
  }
  FeatureStats stats;
  stats.features = features.to(torch::kCPU, torch::kFloat32).contiguous();
  const torch::Tensor wide = features.to(torch::kFloat64);
  stats.mean = wide.mean(0).cpu();
  const torch::Tensor centered = wide - wide.mean(0);
  stats.covariance = (centered.t().mm(centered) / double(features.size(0) - 1)).cpu();
  return stats;
}

void save_feature_stats(const FeatureStats& stats, const fs::path& path) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("format", std::string(kFormat));
  dict.insert("version", kVersion);
  dict.insert("features", stats.features.to(torch::kCPU, torch::kFloat32).contiguous());
  dict.insert("mean", stats.mean.to(torch::kCPU, torch::kFloat64).contiguous());
  dict.insert("covariance", stats.covariance.to(torch::kCPU, torch::kFloat64).contiguous());
  dict.insert("feature_net", stats.feature_net);
  dict.insert("feature_net_file", stats.feature_net_file);
  dict.insert("source", stats.source);
  dict.insert("image_shape", stats.image_shape);
  dict.insert("skipped", stats.skipped);
  write_pickle_file(path, c10::IValue(dict));
}

FeatureStats load_feature_stats(const fs::path& path) {
  const c10::IValue value = read_pickle_file(path, "stats file '" + path.string() + "'");
  const auto not_stats = [&] {
    return stats_error(path, "is not a feature stats file (make one with ddpm eval "
                             "--save-real-stats FILE)");
  };
  if (!value.isGenericDict()) throw not_stats();
  const StatsReader reader(path, value.toGenericDict());
  if (!value.toGenericDict().contains("format") || reader.string("format") != kFormat) {
    throw not_stats();
  }
  const int64_t version = reader.integer("version");
  if (version > kVersion) {
    throw stats_error(path, "has version " + std::to_string(version) +
                                "; this ddpm reads up to " + std::to_string(kVersion) +
                                " (made by a newer ddpm?)");
  }
  FeatureStats stats;
  stats.features = reader.tensor("features", torch::kFloat32);
  stats.mean = reader.tensor("mean", torch::kFloat64);
  stats.covariance = reader.tensor("covariance", torch::kFloat64);
  stats.feature_net = reader.string("feature_net");
  stats.feature_net_file = reader.string("feature_net_file");
  stats.source = reader.string("source");
  stats.image_shape = reader.string("image_shape");
  stats.skipped = reader.integer("skipped");
  const auto& features = stats.features;
  const bool consistent = features.dim() == 2 && features.size(0) >= 2 &&
                          features.size(1) >= 1 && stats.mean.dim() == 1 &&
                          stats.mean.size(0) == features.size(1) &&
                          stats.covariance.dim() == 2 &&
                          stats.covariance.size(0) == features.size(1) &&
                          stats.covariance.size(1) == features.size(1);
  if (!consistent) {
    throw stats_error(path, "holds features, mean and covariance whose shapes do not fit "
                            "together (damaged?); make it again");
  }
  return stats;
}

}  // namespace ddpm
