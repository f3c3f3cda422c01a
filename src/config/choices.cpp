// The closed choices' name tables, in enum order; see choices.h.
#include "config/choices.h"

namespace ddpm {

const std::vector<std::string>& choice_names(LabelSource) {
  static const std::vector<std::string> names = {"none", "folders"};
  return names;
}

const std::vector<std::string>& choice_names(TimeEmbeddingOrder) {
  static const std::vector<std::string> names = {"sin_cos", "cos_sin"};
  return names;
}

const std::vector<std::string>& choice_names(DownsamplePadding) {
  static const std::vector<std::string> names = {"asymmetric", "symmetric"};
  return names;
}

const std::vector<std::string>& choice_names(Schedule) {
  static const std::vector<std::string> names = {"linear", "cosine", "quadratic", "sigmoid",
                                                 "custom"};
  return names;
}

const std::vector<std::string>& choice_names(Prediction) {
  static const std::vector<std::string> names = {"eps", "x0", "v"};
  return names;
}

const std::vector<std::string>& choice_names(LossWeighting) {
  static const std::vector<std::string> names = {"none", "min_snr"};
  return names;
}

const std::vector<std::string>& choice_names(LossKind) {
  static const std::vector<std::string> names = {"simple", "hybrid", "vlb"};
  return names;
}

const std::vector<std::string>& choice_names(TimestepSampling) {
  static const std::vector<std::string> names = {"uniform", "loss_aware"};
  return names;
}

const std::vector<std::string>& choice_names(OnNonfinite) {
  static const std::vector<std::string> names = {"stop", "skip"};
  return names;
}

const std::vector<std::string>& choice_names(Variance) {
  static const std::vector<std::string> names = {"fixed_large", "fixed_small", "learned"};
  return names;
}

const std::vector<std::string>& choice_names(Spacing) {
  static const std::vector<std::string> names = {"uniform",  "quadratic", "leading",
                                                 "trailing", "linspace",  "karras"};
  return names;
}

const std::vector<std::string>& choice_names(DistillWeighting) {
  static const std::vector<std::string> names = {"truncated_snr", "snr_plus_one"};
  return names;
}

std::vector<std::string> timestep_spacing_names() {
  std::vector<std::string> names;
  for (const std::string& name : choice_names<Spacing>()) {
    if (name != "karras") names.push_back(name);
  }
  return names;
}

}  // namespace ddpm
