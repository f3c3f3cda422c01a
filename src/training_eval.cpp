// Sample quality during training; see training_eval.h.
#include "ddpm/training_eval.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "ddpm/error.h"
#include "ddpm/guidance.h"
#include "ddpm/metrics.h"
#include "ddpm/sampler.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

std::string feature_net_path(const TrainConfig& train) {
  return train.eval_feature_net.empty() ? std::string(kDefaultFeatureNet)
                                        : train.eval_feature_net;
}

FeatureNet open_feature_net(const Config& config, torch::Device device) {
  const std::string path = feature_net_path(config.train);
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    throw Error(ErrorKind::config,
                "train.eval_feature_net: the feature network '" + path +
                    "' does not exist" +
                    (config.train.eval_feature_net.empty()
                         ? " (the default, relative to the current folder); make it with "
                           "python3 scripts/train_feature_net.py, or give its path"
                         : "; check the path") +
                    ", or set train.eval_every=0");
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
                    "; give a network made for this data (see the README, 'Evaluating "
                    "quality'), or set train.eval_every=0");
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

}  // namespace

TrainingEvaluator::TrainingEvaluator(const Config& config, torch::Device device)
    : config_(config),
      net_(open_feature_net(config, device)),
      real_(real_stats(config.train, net_, std::max(1, config.sample.batch_size))) {}

nlohmann::json TrainingEvaluator::evaluate(UNet& ema_model, const NoiseSchedule& schedule) {
  const auto start = std::chrono::steady_clock::now();
  const bool was_training = ema_model->is_training();
  ema_model->eval();
  const SamplerOptions options = sampler_options(config_.sample, config_.diffusion);
  const int64_t total = config_.train.eval_samples;
  const int64_t batch = std::max(1, config_.sample.batch_size);
  // A class-conditional model: every class in turn, at sample.guidance.
  const std::vector<int64_t> labels = classes_in_turn(all_classes(config_.model), total);
  std::vector<torch::Tensor> features;
  for (int64_t first = 0; first < total; first += batch) {
    const int64_t count = std::min(batch, total - first);
    const EpsilonPredictor predictor = guided_predictor(
        ema_model, label_slice(labels, first, count), config_.sample.guidance,
        precision_from_name(config_.sample.precision, "sample.precision"));
    torch::Tensor images;
    {
      torch::InferenceMode inference;
      images = sample_images(
          predictor, schedule, options, first, count,
          {config_.data.channels, config_.data.height, config_.data.width},
          config_.sample.seed, schedule.device());
    }
    // The 8-bit values a PNG of the sample would hold.
    images = images.clamp(-1.0, 1.0).add(1.0).mul(127.5).round().div(127.5).sub(1.0);
    features.push_back(net_.features(images.to(net_.device())));
  }
  ema_model->train(was_training);
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
  return result;
}

}  // namespace ddpm
