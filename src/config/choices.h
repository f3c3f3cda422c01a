// The closed choices of the config as enums, each with its table of names in enum order. A name
// is parsed once, at the JSON boundary (config_json.h, the diffusers reader, the CLI), from the
// same table that --help, did-you-mean hints and the JSON writer read; past it, code switches on
// the enum. (sampler_kind.h holds the samplers' table, precision.h the number formats'.)
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/precision_name.h"
#include "base/suggest.h"

namespace ddpm {

// data.labels: unlabelled images, or one class per immediate subfolder (class_folders.h).
enum class LabelSource { none, folders };
// model.time_embedding_order: sin then cos (DDPM), or cos then sin (diffusers' flip_sin_to_cos).
enum class TimeEmbeddingOrder { sin_cos, cos_sin };
// model.downsample_padding: one row and column of zeros at the bottom and right (TensorFlow's
// SAME, the original DDPM), or one on every side (diffusers).
enum class DownsamplePadding { asymmetric, symmetric };
// diffusion.schedule (schedule.h).
enum class Schedule { linear, cosine, quadratic, sigmoid, custom };
// diffusion.prediction: what the network predicts (the conversions are prediction.h).
enum class Prediction { eps, x0, v };
// train.loss_weighting: L_simple, or Min-SNR-gamma (loss.h).
enum class LossWeighting { none, min_snr };
// train.loss: L_simple, L_hybrid = L_simple + train.vlb_weight * L_vlb, or L_vlb alone (loss.h).
enum class LossKind { simple, hybrid, vlb };
// train.timestep_sampling: t uniform, or importance-sampled by the recent losses
// (timestep_resampler.h).
enum class TimestepSampling { uniform, loss_aware };
// train.on_nonfinite: what a NaN/Inf loss or gradient does.
enum class OnNonfinite { stop, skip };
// sample.variance of the ddpm sampler and of the likelihood bound: beta_t, the posterior's
// beta~_t, or the variance a model.learn_variance model predicts (likelihood.h).
enum class Variance { fixed_large, fixed_small, learned };
// sample.spacing (timestep_grid.h says what each gives); karras only for the sigma-space
// samplers.
enum class Spacing { uniform, quadratic, leading, trailing, linspace, karras };
// distill.weighting: the weight of a distillation example's squared error in x0 (distillation.h),
// max(SNR, 1) ("truncated SNR", Salimans & Ho 2022's default) or SNR + 1.
enum class DistillWeighting { truncated_snr, snr_plus_one };

// The names of each choice, in enum order (the argument only selects the table).
const std::vector<std::string>& choice_names(LabelSource);
const std::vector<std::string>& choice_names(TimeEmbeddingOrder);
const std::vector<std::string>& choice_names(DownsamplePadding);
const std::vector<std::string>& choice_names(Schedule);
const std::vector<std::string>& choice_names(Prediction);
const std::vector<std::string>& choice_names(LossWeighting);
const std::vector<std::string>& choice_names(LossKind);
const std::vector<std::string>& choice_names(TimestepSampling);
const std::vector<std::string>& choice_names(OnNonfinite);
const std::vector<std::string>& choice_names(Variance);
const std::vector<std::string>& choice_names(Spacing);
const std::vector<std::string>& choice_names(DistillWeighting);
inline const std::vector<std::string>& choice_names(Precision) { return precision_names(); }

template <typename Choice>
const std::vector<std::string>& choice_names() {
  return choice_names(Choice{});
}

template <typename Choice>
const std::string& choice_name(Choice value) {
  return choice_names(Choice{})[static_cast<size_t>(value)];
}

// The choice named `name`; anything else throws ddpm::Error (config) naming `key_path`, listing
// the names with the closest one suggested.
template <typename Choice>
Choice choice_from_name(const std::string& name, const std::string& key_path) {
  const std::vector<std::string>& names = choice_names(Choice{});
  require_choice(name, key_path, names);
  size_t index = 0;
  while (names[index] != name) ++index;
  return static_cast<Choice>(index);
}

// The spacings of schedule timesteps (every spacing but karras: diffusers' names), which every
// sampler takes.
std::vector<std::string> timestep_spacing_names();

}  // namespace ddpm
