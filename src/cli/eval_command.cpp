// `ddpm eval`: FID, KID, precision and recall of generated images against real ones, on the
// features of a TorchScript network; either side may be a folder or a saved stats file.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/device.h"
#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/error.h"
#include "eval/feature_net.h"
#include "eval/feature_stats.h"
#include "eval/metrics.h"
#include "progress.h"

namespace ddpm::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct MetricChoice {
  bool fid = false, kid = false, precision_recall = false;
  int pr_k = 3;
};

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

// An output file named by an option: refused before any work when it exists (unless
// --overwrite) or its folder does not.
void check_output(const std::string& option, const fs::path& path, bool overwrite) {
  std::error_code error;
  if (fs::exists(path, error) && !overwrite) {
    throw Error(ErrorKind::usage, "--" + option + " '" + path.string() +
                                      "' exists; pass --overwrite to replace it, or choose "
                                      "another file");
  }
  const fs::path folder = path.parent_path();
  if (!folder.empty() && !fs::is_directory(folder, error)) {
    throw Error(ErrorKind::usage, "--" + option + " '" + path.string() + "': the folder '" +
                                      folder.string() + "' does not exist; create it first");
  }
}

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

// The statistics of one side: a folder run through the network now, or a stats file.
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
// (samples of another config); resizing both would let FID measure the resizing.
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

// The metrics asked for, added to `result`; each side's tensors are moved to `device`.
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
// subfolders, the feature network's classifier labels the generated images.
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

}  // namespace

int run_eval(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm eval",
      "Compares generated images with real ones: FID (Fréchet distance of the features' "
      "Gaussians, float64), KID (unbiased MMD², cubic polynomial kernel, mean and standard "
      "deviation over subsets) and precision/recall (k-nearest-neighbour manifolds), on the "
      "features of a TorchScript network (see docs/EVALUATION.md, 'Evaluating quality'). "
      "--real and --generated each take an image folder or a stats file from --save-real-stats. Images "
      "are converted to the network's channels and resized to its input (scale to cover, "
      "centre crop); unreadable files are skipped with a warning.");
  options.add_options()("real", "folder of real images, or a stats file",
                        cxxopts::value<std::string>())(
      "generated", "folder of generated images, or a stats file", cxxopts::value<std::string>())(
      "features", "TorchScript feature network",
      cxxopts::value<std::string>()->default_value(kDefaultFeatureNet))(
      "metrics", "comma-separated: fid, kid, pr",
      cxxopts::value<std::string>()->default_value("fid,kid,pr"))(
      "save-real-stats", "write the real images' features and statistics to this file",
      cxxopts::value<std::string>())(
      "save-generated-stats", "the same for the generated images", cxxopts::value<std::string>())(
      "kid-subsets", "KID: number of subsets averaged",
      cxxopts::value<int>()->default_value("100"))(
      "kid-subset-size", "KID: images per subset (capped at the smaller set)",
      cxxopts::value<int>()->default_value("1000"))(
      "pr-k", "precision/recall: the k of the k-nearest-neighbour radii",
      cxxopts::value<int>()->default_value("3"))(
      "batch", "images per feature-network batch", cxxopts::value<int>()->default_value("64"))(
      "device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"))(
      "json", "also write the results to this JSON file (flat keys)",
      cxxopts::value<std::string>())(
      "allow-size-mismatch", "compare real and generated images of different sizes or channels")(
      "overwrite", "replace existing --json and stats files")(
      "per-class",
      "also per class, with each class's share of the generated images: each class subfolder of "
      "--generated against the --real subfolder of its name; a --generated folder without "
      "class subfolders (an unconditional model's samples) is labelled by the feature "
      "network's classifier, when it has one (both folders)");
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("real") || !arguments.count("generated")) {
    throw Error(ErrorKind::usage, "ddpm eval needs --real DIR|STATS and --generated DIR|STATS");
  }
  const int batch = arguments["batch"].as<int>();
  KidOptions kid_options;
  kid_options.subsets = arguments["kid-subsets"].as<int>();
  kid_options.subset_size = arguments["kid-subset-size"].as<int>();
  const int pr_k = arguments["pr-k"].as<int>();
  if (batch < 1) throw Error(ErrorKind::usage, "--batch must be >= 1");
  if (kid_options.subsets < 1) throw Error(ErrorKind::usage, "--kid-subsets must be >= 1");
  if (kid_options.subset_size < kMinImagesKid) {
    throw Error(ErrorKind::usage, "--kid-subset-size must be >= " + std::to_string(kMinImagesKid));
  }
  if (pr_k < 1) throw Error(ErrorKind::usage, "--pr-k must be >= 1");
  const MetricChoice metrics = parse_metrics(arguments["metrics"].as<std::string>(), pr_k);

  const bool overwrite = arguments.count("overwrite") > 0;
  const std::vector<std::pair<std::string, std::string>> roles = {
      {"real", "save-real-stats"}, {"generated", "save-generated-stats"}};
  for (const auto& [role, save_option] : roles) {
    if (!arguments.count(save_option)) continue;
    std::error_code error;
    if (fs::is_regular_file(arguments[role].as<std::string>(), error)) {
      throw Error(ErrorKind::usage, "--" + save_option + " needs --" + role +
                                        " to be an image folder; it is a stats file already");
    }
    check_output(save_option, arguments[save_option].as<std::string>(), overwrite);
  }
  if (arguments.count("json")) check_output("json", arguments["json"].as<std::string>(), overwrite);

  const std::string features_file = arguments["features"].as<std::string>();
  std::error_code error;
  if (arguments.count("features") == 0 && !fs::exists(features_file, error)) {
    throw Error(ErrorKind::usage,
                std::string("no --features given, and the default feature network '") +
                    kDefaultFeatureNet +
                    "' (relative to the current folder) does not exist. For Fashion-MNIST make "
                    "it with: python3 scripts/train_feature_net.py (a few minutes on a CPU); for "
                    "RGB data export Inception-v3 with scripts/export_inception.py; then pass "
                    "--features FILE");
  }
  const auto start = Clock::now();
  const torch::Device device = resolve_device(arguments["device"].as<std::string>());
  FeatureNet net(features_file, device);
  log::info("feature network " + features_file + " (" + net.identifier() + ") on " +
            describe_device(device));

  const FeatureStats real =
      side_stats("real", arguments["real"].as<std::string>(), net, batch, metrics);
  const FeatureStats generated =
      side_stats("generated", arguments["generated"].as<std::string>(), net, batch, metrics);
  if (!arguments.count("allow-size-mismatch")) check_shapes(real, generated, net.input());
  for (const auto& [role, save_option] : roles) {
    if (arguments.count(save_option)) {
      save_feature_stats(role == "real" ? real : generated,
                         arguments[save_option].as<std::string>());
    }
  }

  nlohmann::json result = {{"fid", nullptr},
                           {"kid_mean", nullptr},
                           {"kid_std", nullptr},
                           {"kid_subsets", kid_options.subsets},
                           {"kid_subset_size", nullptr},
                           {"precision", nullptr},
                           {"recall", nullptr},
                           {"pr_k", pr_k},
                           {"num_real", real.num_images()},
                           {"num_generated", generated.num_images()},
                           {"feature_dim", real.feature_dim()},
                           {"features_file", features_file},
                           {"feature_net", net.identifier()},
                           {"real", arguments["real"].as<std::string>()},
                           {"generated", arguments["generated"].as<std::string>()}};
  add_metrics(result, real, generated, metrics, kid_options, device);
  nlohmann::json classes;
  if (arguments.count("per-class")) {
    classes = per_class_metrics(arguments["real"].as<std::string>(),
                                arguments["generated"].as<std::string>(), net, batch, metrics,
                                kid_options, device, arguments.count("allow-size-mismatch") > 0);
  }
  result["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();

  for (const auto& item : result.items()) {
    std::printf("%-16s %s\n", item.key().c_str(), item.value().dump().c_str());
  }
  if (!classes.is_null()) {
    double lowest = 1, highest = 0;
    for (const auto& [name, values] : classes.items()) {
      lowest = std::min(lowest, values["fraction"].get<double>());
      highest = std::max(highest, values["fraction"].get<double>());
    }
    std::printf("%-16s %.4f .. %.4f (the smallest and largest class share of the generated "
                "images)\n", "class_balance", lowest, highest);
    for (const auto& [name, values] : classes.items()) {
      std::printf("class %s:", name.c_str());
      for (const auto& item : values.items()) {
        std::printf(" %s %s", item.key().c_str(), item.value().dump().c_str());
      }
      std::printf("\n");
    }
    result["per_class"] = classes;
  }
  if (arguments.count("json")) {
    write_file_atomically(arguments["json"].as<std::string>(), result.dump(2) + "\n");
  }
  return 0;
}

}  // namespace ddpm::cli
