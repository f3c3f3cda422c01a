// Sample quality during training; see training_eval.h.
#include "train/training_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "base/log.h"

#include "data/image_folder.h"
#include "ddpm/error.h"
#include "diffusion/generation.h"
#include "diffusion/guidance.h"
#include "diffusion/likelihood.h"
#include "eval/metrics.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"
#include "formats/image_tensor.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

std::string feature_net_path(const TrainConfig& train) {
  if (!train.eval_feature_net.empty()) return train.eval_feature_net;
  const fs::path found = find_default_feature_net();
  return found.empty() ? std::string(kDefaultFeatureNet) : found.string();
}

FeatureNet open_feature_net(const Config& config, torch::Device device) {
  const std::string path = feature_net_path(config.train);
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    throw Error(ErrorKind::config,
                config.train.eval_feature_net.empty()
                    ? default_feature_net_missing("train.eval_feature_net is not set") +
                          "; give its path in train.eval_feature_net, or set train.eval_every=0"
                    : "train.eval_feature_net: the feature network '" + path +
                          "' does not exist; check the path, or set train.eval_every=0");
  }
  FeatureNet net(path, device);
  const FeatureNetInput input = net.input();
  const DataConfig& data = config.data;
  if (input.channels != data.channels || input.height != data.height ||
      input.width != data.width) {
    const auto shape = [](int h, int w, int c) {
      return std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c);
    };
    throw Error(ErrorKind::config,
                "train.eval_feature_net '" + path + "' takes " +
                    shape(input.height, input.width, input.channels) +
                    " images and the model makes " +
                    shape(data.height, data.width, data.channels) +
                    "; give a network made for this data (see docs/EVALUATION.md, "
                    "'Evaluating quality'), or set train.eval_every=0");
  }
  return net;
}

FeatureStats real_stats(const TrainConfig& train, FeatureNet& net, int batch) {
  const fs::path path = train.eval_real;
  std::error_code error;
  if (fs::is_regular_file(path, error)) {
    FeatureStats stats = load_feature_stats(path);
    if (stats.feature_net != net.identifier()) {
      throw Error(ErrorKind::config,
                  "train.eval_real: the stats file '" + path.string() +
                      "' was made with the feature network '" + stats.feature_net_file +
                      "', not '" + net.path().string() +
                      "'; make it again with this network (ddpm eval --save-real-stats), or "
                      "give the image folder");
    }
    return stats;
  }
  if (!fs::is_directory(path, error)) {
    throw Error(ErrorKind::config, "train.eval_real '" + path.string() +
                                       "' is neither an image folder nor a stats file; check "
                                       "the path, or set train.eval_every=0");
  }
  const FolderFeatures folder = folder_features(path, net, batch);
  if (folder.features.size(0) < 4) {
    throw Error(ErrorKind::config, "train.eval_real '" + path.string() + "' holds " +
                                       std::to_string(folder.features.size(0)) +
                                       " readable image(s); the metrics need at least 4");
  }
  FeatureStats stats = feature_stats(folder.features);
  stats.feature_net = net.identifier();
  stats.source = path.string();
  return stats;
}

// The first train.eval_nll_images images of the training folder (sorted), read as the loader
// reads them but without the flip: [N, C, H, W] in [-1, 1] (none when eval_nll_images is 0).
torch::Tensor nll_images(const Config& config) {
  const int count = config.train.eval_nll_images;
  if (count == 0) return {};
  const DataConfig& data = config.data;
  std::vector<std::filesystem::path> files = scan_image_folder(data.path, data.max_files);
  if (files.size() > static_cast<size_t>(count)) files.resize(count);
  std::vector<torch::Tensor> images;
  for (const auto& file : files) {
    const Image image = read_image(file, data.channels, data.max_image_pixels);
    const bool fits = image.height == data.height && image.width == data.width;
    images.push_back(
        image_to_tensor(fits ? image : resize_and_crop(image, data.height, data.width)));
  }
  return torch::stack(images);
}

}  // namespace

TrainingEvaluator::TrainingEvaluator(const Config& config, torch::Device device)
    : config_(config),
      net_(open_feature_net(config, device)),
      real_(real_stats(config.train, net_, std::max(1, config.sample.batch_size))),
      nll_images_(nll_images(config)) {}

nlohmann::json TrainingEvaluator::bits_per_dim(UNet& ema_model,
                                               const NoiseSchedule& schedule) const {
  const auto start = std::chrono::steady_clock::now();
  const EpsilonPredictor model = guided_predictor(ema_model, {}, 1.0, config_.sample.precision);
  NllOptions options;
  options.bound = bound_options(config_);
  options.seed = config_.sample.seed;
  const int64_t batch = std::max(1, config_.sample.batch_size);
  std::vector<torch::Tensor> values;
  for (int64_t first = 0; first < nll_images_.size(0); first += batch) {
    options.first_image = first;
    const int64_t size = std::min(batch, nll_images_.size(0) - first);
    values.push_back(nll_bound(model, schedule,
                               nll_images_.narrow(0, first, size).to(schedule.device()), options)
                         .bits_per_dim);
  }
  const torch::Tensor all = torch::cat(values);
  nlohmann::json result;
  result["bits_per_dim"] = all.mean().item<double>();
  result["bits_per_dim_se"] =
      all.size(0) > 1 ? all.std().item<double>() / std::sqrt(double(all.size(0))) : 0.0;
  result["nll_images"] = all.size(0);
  result["nll_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

nlohmann::json TrainingEvaluator::evaluate(UNet& ema_model, const NoiseSchedule& schedule) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t total = config_.train.eval_samples;
  // A class-conditional model: every class in turn, at sample.guidance.
  const SampleInputs inputs{classes_in_turn(all_classes(config_.model), total), {}};
  std::vector<torch::Tensor> features;
  sample_all(ema_model, schedule, sample_settings(config_), inputs, total,
             [&](int64_t, const torch::Tensor& images) {
               // The 8-bit values a PNG of the sample would hold.
               const torch::Tensor stored =
                   images.clamp(-1.0, 1.0).add(1.0).mul(127.5).round().div(127.5).sub(1.0);
               features.push_back(net_.features(stored.to(net_.device())));
             });
  const torch::Tensor generated = torch::cat(features);
  const FeatureStats stats = feature_stats(generated);
  const torch::Device device = net_.device();
  nlohmann::json result;
  result["fid"] = frechet_distance(real_.mean.to(device), real_.covariance.to(device),
                                   stats.mean.to(device), stats.covariance.to(device));
  const KidResult kid =
      kernel_inception_distance(real_.features.to(device), generated.to(device), KidOptions{});
  result["kid_mean"] = kid.mean;
  result["kid_std"] = kid.std;
  const PrecisionRecall pr = precision_recall(real_.features.to(device), generated.to(device));
  result["precision"] = pr.precision;
  result["recall"] = pr.recall;
  result["eval_samples"] = total;
  result["eval_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (nll_images_.defined()) result.update(bits_per_dim(ema_model, schedule));
  return result;
}

void log_quality(const nlohmann::json& quality, int64_t step, const TrainConfig& options) {
  const auto number = [&](const char* key) {
    std::ostringstream out;
    out.precision(6);
    out << quality[key].get<double>();
    return out.str();
  };
  log::info("step " + std::to_string(step) + ": FID " + number("fid") + ", KID " +
            number("kid_mean") + ", precision " + number("precision") + ", recall " +
            number("recall") + " (" + std::to_string(options.eval_samples) + " EMA samples, " +
            number("eval_seconds") + " s)");
  if (quality.contains("bits_per_dim")) {
    log::info("step " + std::to_string(step) + ": " + number("bits_per_dim") + " bits/dim (+- " +
              number("bits_per_dim_se") + ", " + std::to_string(options.eval_nll_images) +
              " training images, " + number("nll_seconds") + " s)");
  }
}

}  // namespace ddpm
