// The comparison of `ddpm eval`; see eval_comparison.h.
#include "eval_comparison.h"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "base/log.h"
#include "ddpm/error.h"
#include "progress.h"

namespace ddpm::cli {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

MetricChoice parse_metrics(const std::string& list, int pr_k) {
  MetricChoice choice;
  choice.pr_k = pr_k;
  std::stringstream stream(list);
  std::string name;
  while (std::getline(stream, name, ',')) {
    if (name == "fid") {
      choice.fid = true;
    } else if (name == "kid") {
      choice.kid = true;
    } else if (name == "pr") {
      choice.precision_recall = true;
    } else {
      throw Error(ErrorKind::usage, "--metrics: unknown metric '" + name +
                                        "'; choose from fid, kid, pr (comma-separated)");
    }
  }
  if (!choice.fid && !choice.kid && !choice.precision_recall) {
    throw Error(ErrorKind::usage, "--metrics names no metric; use e.g. --metrics fid,kid,pr");
  }
  return choice;
}

namespace {

// Too few images for a metric that was asked for: an error naming the source and the minimum.
void check_count(const std::string& role, const std::string& source, int64_t count,
                 const MetricChoice& metrics) {
  const auto require = [&](bool asked, int64_t minimum, const std::string& metric,
                           const std::string& remedy) {
    if (asked && count < minimum) {
      throw Error(ErrorKind::runtime,
                  "the " + role + " images ('" + source + "') are " + std::to_string(count) +
                      " readable image(s); " + metric + " needs at least " +
                      std::to_string(minimum) + ": add images" + remedy +
                      ", or leave it out of --metrics");
    }
  };
  require(metrics.fid, kMinImagesFid, "FID", "");
  require(metrics.kid, kMinImagesKid, "KID", "");
  require(metrics.precision_recall, min_images_precision_recall(metrics.pr_k),
          "precision/recall with --pr-k " + std::to_string(metrics.pr_k), ", lower --pr-k");
}

}  // namespace

FeatureStats side_stats(const std::string& role, const fs::path& path, FeatureNet& net,
                        int batch, const MetricChoice& metrics) {
  std::error_code error;
  if (fs::is_regular_file(path, error)) {
    FeatureStats stats = load_feature_stats(path);
    if (stats.feature_net != net.identifier()) {
      throw Error(ErrorKind::runtime,
                  "stats file '" + path.string() + "' was made with the feature network '" +
                      stats.feature_net_file + "' (" + stats.feature_net + "), not '" +
                      net.path().string() + "' (" + net.identifier() +
                      "); features of different networks cannot be compared. Compute the " +
                      role + " statistics again from the image folder with this network");
    }
    check_count(role, path.string(), stats.num_images(), metrics);
    log::info(role + ": " + std::to_string(stats.num_images()) + " images' features from " +
              path.string() + " (made from " + stats.source + ")");
    return stats;
  }
  if (!fs::is_directory(path, error)) {
    throw Error(ErrorKind::usage, "--" + role + " '" + path.string() +
                                      "' is neither an image folder nor a stats file; check "
                                      "the path");
  }
  ProgressDisplay display(role + " images", 1000);
  const auto start = Clock::now();
  FolderFeatures folder = folder_features(path, net, batch, [&](int64_t done, int64_t total) {
    display.update(done, total, std::chrono::duration<double>(Clock::now() - start).count(), "");
  });
  display.finish();
  if (folder.skipped > 0) {
    std::string names;
    for (const std::string& example : folder.skipped_examples) names += "\n  " + example;
    log::warn("skipped " + std::to_string(folder.skipped) + " unreadable image file(s) in " +
              path.string() + ":" + names);
  }
  if (!folder.mixed_example.empty()) {
    log::warn("the " + role + " images differ in size (" + folder.mixed_example +
              "); each is resized to the network's input. Is a file that is not a sample in "
              "the folder (a grid.png of ddpm sample --grid)?");
  }
  check_count(role, path.string(), folder.features.size(0), metrics);
  FeatureStats stats = feature_stats(folder.features);
  stats.feature_net = net.identifier();
  stats.feature_net_file = net.path().string();
  stats.source = path.string();
  stats.image_shape = folder.image_shape;
  stats.skipped = folder.skipped;
  const FeatureNetInput input = net.input();
  log::info(role + ": " + std::to_string(stats.num_images()) + " images (" + folder.image_shape +
            ", resized to the network's " + std::to_string(input.height) + "x" +
            std::to_string(input.width) + "x" + std::to_string(input.channels) + ") from " +
            path.string() + " in " +
            format_duration(std::chrono::duration<double>(Clock::now() - start).count()));
  return stats;
}

// Real and generated images of different sizes or channel counts are almost always a mistake
void check_shapes(const FeatureStats& real, const FeatureStats& generated,
                  const FeatureNetInput& input) {
  const auto known = [](const std::string& shape) { return !shape.empty() && shape != "mixed"; };
  if (known(real.image_shape) && known(generated.image_shape) &&
      real.image_shape != generated.image_shape) {
    throw Error(ErrorKind::usage,
                "the real images are " + real.image_shape + " (height x width x channels) and "
                "the generated ones " + generated.image_shape + "; metrics would then measure "
                "the resizing and colour conversion as much as quality. Generate images like "
                "the real ones, or pass --allow-size-mismatch to resize both to the feature "
                "network's input (" + std::to_string(input.height) + "x" +
                std::to_string(input.width) + "x" + std::to_string(input.channels) + ") anyway");
  }
}

void add_metrics(nlohmann::json& result, const FeatureStats& real, const FeatureStats& generated,
                 const MetricChoice& metrics, const KidOptions& kid_options,
                 torch::Device device) {
  const int64_t dim = real.feature_dim();
  if (metrics.fid) {
    const int64_t fewest = std::min(real.num_images(), generated.num_images());
    if (fewest < dim) {
      log::warn("FID from " + std::to_string(fewest) + " images of " + std::to_string(dim) +
                " features: the covariance is singular (rank < " + std::to_string(dim) +
                "), so FID is biased upward and comparable only with FIDs from as many images; "
                "use at least " + std::to_string(dim) + " images");
    }
    result["fid"] = frechet_distance(real.mean.to(device), real.covariance.to(device),
                                     generated.mean.to(device), generated.covariance.to(device));
  }
  if (metrics.kid) {
    const KidResult kid = kernel_inception_distance(real.features.to(device),
                                                    generated.features.to(device), kid_options);
    result["kid_mean"] = kid.mean;
    result["kid_std"] = kid.std;
    result["kid_subset_size"] = kid.subset_size;
  }
  if (metrics.precision_recall) {
    const PrecisionRecall pr =
        precision_recall(real.features.to(device), generated.features.to(device), metrics.pr_k);
    result["precision"] = pr.precision;
    result["recall"] = pr.recall;
  }
}

namespace {

// The metrics of `metrics` that `count` images allow (per-class sets can be small).
MetricChoice possible_metrics(const MetricChoice& metrics, int64_t count) {
  MetricChoice possible = metrics;
  possible.fid = metrics.fid && count >= kMinImagesFid;
  possible.kid = metrics.kid && count >= kMinImagesKid;
  possible.precision_recall =
      metrics.precision_recall && count >= min_images_precision_recall(metrics.pr_k);
  return possible;
}

// One class's entry: image counts, the generated share, and the metrics its counts allow
// (null where too few images; a class with no generated image has only its counts).
nlohmann::json class_entry(const FeatureStats& real_class, const torch::Tensor& generated_features,
                           int64_t total_generated, const MetricChoice& metrics,
                           const KidOptions& kid_options, torch::Device device) {
  const int64_t count = generated_features.size(0);
  nlohmann::json result = {{"num_real", real_class.num_images()},
                           {"num_generated", count},
                           {"fraction", static_cast<double>(count) / total_generated}};
  const MetricChoice possible = possible_metrics(metrics, count);
  if (possible.fid || possible.kid || possible.precision_recall) {
    FeatureStats generated_class = feature_stats(generated_features);
    generated_class.features = generated_features;
    add_metrics(result, real_class, generated_class, possible, kid_options, device);
  }
  return result;
}

// --per-class on a generated folder without class subfolders (an unconditional model's
// samples): the network's classifier labels each generated image, and each class is compared
// with the real folder's subfolder of the class's name (or, when the real folder has none, with
// the real images the classifier puts in that class).
nlohmann::json classifier_class_metrics(const fs::path& real, const fs::path& generated,
                                        FeatureNet& net, int batch, const MetricChoice& metrics,
                                        const KidOptions& kid_options, torch::Device device) {
  const std::vector<std::string>& names = net.class_names();
  log::info("--per-class: '" + generated.string() + "' has no class subfolders; the feature "
            "network's classifier labels its images (" + std::to_string(names.size()) +
            " classes)");
  const FolderFeatures labelled = folder_features(generated, net, batch, {}, true);
  std::error_code error;
  const bool real_folders = std::all_of(names.begin(), names.end(), [&](const std::string& name) {
    return fs::is_directory(real / name, error);
  });
  FolderFeatures real_labelled;
  if (!real_folders) {
    log::info("--per-class: '" + real.string() + "' has no subfolder for every class; the "
              "classifier labels the real images too");
    real_labelled = folder_features(real, net, batch, {}, true);
  }
  nlohmann::json classes = nlohmann::json::object();
  const int64_t total = labelled.features.size(0);
  for (size_t index = 0; index < names.size(); ++index) {
    const auto in_class = [&](const FolderFeatures& folder) {
      return folder.features.index_select(
          0, torch::nonzero(folder.classes == static_cast<int64_t>(index)).flatten());
    };
    FeatureStats real_class;
    if (real_folders) {
      real_class = side_stats("real", real / names[index], net, batch, metrics);
    } else {
      const torch::Tensor features = in_class(real_labelled);
      if (features.size(0) < 2) {
        throw Error(ErrorKind::runtime, "--per-class: the classifier puts " +
                                            std::to_string(features.size(0)) +
                                            " real image(s) in class '" + names[index] +
                                            "'; give the real images in class subfolders");
      }
      real_class = feature_stats(features);
      real_class.features = features;
    }
    classes[names[index]] =
        class_entry(real_class, in_class(labelled), total, metrics, kid_options, device);
  }
  return classes;
}

// --per-class: the class subfolders of the generated folder (ddpm sample's layout with
// several classes), each against the real folder's subfolder of the same name; without class
}  // namespace

nlohmann::json per_class_metrics(const fs::path& real, const fs::path& generated,
                                 FeatureNet& net, int batch, const MetricChoice& metrics,
                                 const KidOptions& kid_options, torch::Device device,
                                 bool allow_size_mismatch) {
  std::error_code error;
  for (const auto& [role, path] : {std::pair{"real", real}, std::pair{"generated", generated}}) {
    if (!fs::is_directory(path, error)) {
      throw Error(ErrorKind::usage, std::string("--per-class needs --") + role +
                                        " to be an image folder, not a stats file");
    }
  }
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(generated, error)) {
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) {
    if (net.has_classifier()) {
      return classifier_class_metrics(real, generated, net, batch, metrics, kid_options, device);
    }
    throw Error(ErrorKind::usage, "--per-class: '" + generated.string() +
                                      "' has no class subfolders, and the feature network has "
                                      "no classifier to label its images; sample several "
                                      "classes (ddpm sample writes one subfolder per class), or "
                                      "use a network with classify and class_names "
                                      "(scripts/train_feature_net.py)");
  }
  for (const std::string& name : names) {
    if (!fs::is_directory(real / name, error)) {
      throw Error(ErrorKind::usage, "--per-class: '" + generated.string() + "' has the class "
                                    "folder '" + name + "' but '" + real.string() +
                                        "' has no folder of that name; give the real images "
                                        "in class subfolders named as the model's classes");
    }
  }
  nlohmann::json classes = nlohmann::json::object();
  int64_t total = 0;
  for (const std::string& name : names) {
    const FeatureStats real_class = side_stats("real", real / name, net, batch, metrics);
    const FeatureStats generated_class =
        side_stats("generated", generated / name, net, batch, metrics);
    if (!allow_size_mismatch) check_shapes(real_class, generated_class, net.input());
    nlohmann::json result = {{"num_real", real_class.num_images()},
                             {"num_generated", generated_class.num_images()}};
    total += generated_class.num_images();
    add_metrics(result, real_class, generated_class, metrics, kid_options, device);
    classes[name] = result;
  }
  for (auto& [name, result] : classes.items()) {
    result["fraction"] = result["num_generated"].get<double>() / static_cast<double>(total);
  }
  return classes;
}

}  // namespace ddpm::cli
