// `ddpm eval`: FID, KID, precision and recall of generated images against real ones, on the
// features of a TorchScript network; either side may be a folder or a saved stats file. The
// comparison itself is eval_comparison.h; this file is the command line and the report.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/device.h"
#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/error.h"
#include "eval_comparison.h"

namespace ddpm::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

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

void add_eval_options(cxxopts::Options& options) {
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
}

// The checked command line of one evaluation: what to compute and where to write it.
struct EvalSettings {
  std::string real, generated, features_file;
  int batch = 64;
  KidOptions kid;
  MetricChoice metrics;
  bool per_class = false, allow_size_mismatch = false;
  std::string json_path;
  std::vector<std::pair<std::string, std::string>> saves;  // (role, stats file to write)
};

EvalSettings eval_settings(const cxxopts::ParseResult& arguments) {
  if (!arguments.count("real") || !arguments.count("generated")) {
    throw Error(ErrorKind::usage, "ddpm eval needs --real DIR|STATS and --generated DIR|STATS");
  }
  EvalSettings settings;
  settings.real = arguments["real"].as<std::string>();
  settings.generated = arguments["generated"].as<std::string>();
  settings.batch = arguments["batch"].as<int>();
  settings.kid.subsets = arguments["kid-subsets"].as<int>();
  settings.kid.subset_size = arguments["kid-subset-size"].as<int>();
  const int pr_k = arguments["pr-k"].as<int>();
  if (settings.batch < 1) throw Error(ErrorKind::usage, "--batch must be >= 1");
  if (settings.kid.subsets < 1) throw Error(ErrorKind::usage, "--kid-subsets must be >= 1");
  if (settings.kid.subset_size < kMinImagesKid) {
    throw Error(ErrorKind::usage, "--kid-subset-size must be >= " + std::to_string(kMinImagesKid));
  }
  if (pr_k < 1) throw Error(ErrorKind::usage, "--pr-k must be >= 1");
  settings.metrics = parse_metrics(arguments["metrics"].as<std::string>(), pr_k);

  const bool overwrite = arguments.count("overwrite") > 0;
  for (const std::string role : {"real", "generated"}) {
    const std::string save_option = "save-" + role + "-stats";
    if (!arguments.count(save_option)) continue;
    std::error_code error;
    if (fs::is_regular_file(arguments[role].as<std::string>(), error)) {
      throw Error(ErrorKind::usage, "--" + save_option + " needs --" + role +
                                        " to be an image folder; it is a stats file already");
    }
    check_output(save_option, arguments[save_option].as<std::string>(), overwrite);
    settings.saves.emplace_back(role, arguments[save_option].as<std::string>());
  }
  if (arguments.count("json")) {
    settings.json_path = arguments["json"].as<std::string>();
    check_output("json", settings.json_path, overwrite);
  }
  settings.features_file = arguments["features"].as<std::string>();
  if (arguments.count("features") == 0) {
    settings.features_file = find_default_feature_net().string();
    if (settings.features_file.empty()) {
      throw Error(ErrorKind::usage,
                  default_feature_net_missing("no --features given") +
                      "; then pass --features FILE");
    }
  }
  settings.per_class = arguments.count("per-class") > 0;
  settings.allow_size_mismatch = arguments.count("allow-size-mismatch") > 0;
  return settings;
}

// The per-class lines: the spread of the class shares, then each class's figures.
void print_classes(const nlohmann::json& classes) {
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
  add_eval_options(options);
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const EvalSettings settings = eval_settings(*parsed);
  const auto start = Clock::now();
  const torch::Device device = resolve_device((*parsed)["device"].as<std::string>());
  FeatureNet net(settings.features_file, device);
  log::info("feature network " + settings.features_file + " (" + net.identifier() + ") on " +
            describe_device(device));

  const MetricChoice& metrics = settings.metrics;
  const FeatureStats real = side_stats("real", settings.real, net, settings.batch, metrics);
  const FeatureStats generated =
      side_stats("generated", settings.generated, net, settings.batch, metrics);
  if (!settings.allow_size_mismatch) check_shapes(real, generated, net.input());
  for (const auto& [role, file] : settings.saves) {
    save_feature_stats(role == "real" ? real : generated, file);
  }

  nlohmann::json result = {{"fid", nullptr},
                           {"kid_mean", nullptr},
                           {"kid_std", nullptr},
                           {"kid_subsets", settings.kid.subsets},
                           {"kid_subset_size", nullptr},
                           {"precision", nullptr},
                           {"recall", nullptr},
                           {"pr_k", metrics.pr_k},
                           {"num_real", real.num_images()},
                           {"num_generated", generated.num_images()},
                           {"feature_dim", real.feature_dim()},
                           {"features_file", settings.features_file},
                           {"feature_net", net.identifier()},
                           {"real", settings.real},
                           {"generated", settings.generated}};
  add_metrics(result, real, generated, metrics, settings.kid, device);
  nlohmann::json classes;
  if (settings.per_class) {
    classes = per_class_metrics(settings.real, settings.generated, net, settings.batch, metrics,
                                settings.kid, device, settings.allow_size_mismatch);
  }
  result["seconds"] = std::chrono::duration<double>(Clock::now() - start).count();
  for (const auto& item : result.items()) {
    std::printf("%-16s %s\n", item.key().c_str(), item.value().dump().c_str());
  }
  if (!classes.is_null()) {
    print_classes(classes);
    result["per_class"] = classes;
  }
  if (!settings.json_path.empty()) {
    write_file_atomically(settings.json_path, result.dump(2) + "\n");
  }
  return 0;
}

}  // namespace ddpm::cli
