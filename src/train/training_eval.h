// Sample quality during training (train.eval_every): the EMA model's samples scored against real
// images with the metrics of `ddpm eval` (metrics.h) in the features of a feature network.
// The real side (train.eval_real: an image folder, or a stats file of `ddpm eval
// --save-real-stats`) is read once, when the run starts; each evaluation then samples
// train.eval_samples images with the sample section's sampler, steps and seed (the same noise
// every time, so the numbers of different steps compare the same draws), quantises them to 8
// bits as PNGs would be, and scores them. With train.eval_nll_images, also the variational
// bound in bits/dim (likelihood.h, every term, the sample seed's draws) of the first
// eval_nll_images training images, read once when the run starts.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/config.h"
#include "diffusion/schedule.h"
#include "eval/feature_net.h"
#include "eval/feature_stats.h"
#include "model/unet.h"

namespace ddpm {

// The log lines of one evaluation's figures (what TrainingEvaluator::evaluate returns).
void log_quality(const nlohmann::json& quality, int64_t step, const TrainConfig& options);

class TrainingEvaluator {
 public:
  // Loads the feature network and the real side. Throws ddpm::Error naming train.eval_real or
  // train.eval_feature_net when one is missing or unreadable, when a stats file was made by
  // another network, or when the network does not take the config's image shape.
  TrainingEvaluator(const Config& config, torch::Device device);

  // {"fid", "kid_mean", "kid_std", "precision", "recall", "eval_samples", "eval_seconds"}, and
  // with train.eval_nll_images {"bits_per_dim", "bits_per_dim_se", "nll_images",
  // "nll_seconds"}.
  nlohmann::json evaluate(UNet& ema_model, const NoiseSchedule& schedule);

  int64_t real_images() const { return real_.num_images(); }

  // Later evaluations sample with these settings (a distillation's next student).
  void set_sample(const SampleConfig& sample) { config_.sample = sample; }

 private:
  nlohmann::json bits_per_dim(UNet& ema_model, const NoiseSchedule& schedule) const;

  Config config_;
  FeatureNet net_;
  FeatureStats real_;
  torch::Tensor nll_images_;  // undefined without train.eval_nll_images
};

}  // namespace ddpm
