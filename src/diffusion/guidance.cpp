// Class choice and classifier-free guidance for sampling; see guidance.h.
#include "diffusion/guidance.h"

#include <algorithm>
#include <charconv>

#include "ddpm/error.h"

namespace ddpm {

namespace {

// The predictor under autocast, its output in x_t's dtype; the predictor itself for fp32.
EpsilonPredictor in_precision(EpsilonPredictor predictor, Precision precision) {
  if (precision == Precision::fp32) return predictor;
  return [predictor, precision](const torch::Tensor& x_t, const torch::Tensor& t) {
    torch::Tensor output;
    {
      AutocastGuard autocast(precision, x_t.device());
      output = predictor(x_t, t);
    }
    return output.to(x_t.scalar_type());
  };
}

EpsilonPredictor guided_in_fp32(Network& network, const torch::Tensor& labels, double guidance) {
  Network* model = &network;
  if (!labels.defined()) {
    return [model](const torch::Tensor& x_t, const torch::Tensor& t) {
      return model->forward(x_t, t);
    };
  }
  const torch::Tensor classes = labels.to(torch::kLong);
  const torch::Tensor none = torch::full_like(classes, model->no_class());
  if (guidance == 1.0 || guidance == 0.0) {
    const torch::Tensor used = guidance == 1.0 ? classes : none;
    return [model, used](const torch::Tensor& x_t, const torch::Tensor& t) {
      return model->forward(x_t, t, used.to(x_t.device()));
    };
  }
  const torch::Tensor both = torch::cat({classes, none});
  return [model, both, guidance](const torch::Tensor& x_t, const torch::Tensor& t) {
    const int64_t count = x_t.size(0);
    const torch::Tensor output =
        model->forward(torch::cat({x_t, x_t}), torch::cat({t, t}), both.to(x_t.device()))
            .to(x_t.scalar_type());  // guided in x_t's precision, also under autocast
    const torch::Tensor conditional = output.narrow(0, 0, count);
    const torch::Tensor unconditional = output.narrow(0, count, count);
    if (output.size(1) == x_t.size(1)) {
      return unconditional + guidance * (conditional - unconditional);
    }
    // A learned-variance model: the prediction guided, the variances the conditional ones (as
    // GLIDE and guided-diffusion do).
    const ModelOutput c = split_output(conditional, x_t.size(1));
    const ModelOutput u = split_output(unconditional, x_t.size(1));
    return torch::cat({u.prediction + guidance * (c.prediction - u.prediction), c.variance}, 1);
  };
}

}  // namespace

EpsilonPredictor guided_predictor(Network& network, const torch::Tensor& labels, double guidance,
                                  Precision precision) {
  EpsilonPredictor guided = guided_in_fp32(network, labels, guidance);
  return network.takes_autocast() ? in_precision(std::move(guided), precision) : guided;
}

EpsilonPredictor guided_predictor(UNet& model, const torch::Tensor& labels, double guidance,
                                  Precision precision) {
  auto network = std::make_shared<UNetNetwork>(model);
  EpsilonPredictor predictor = guided_predictor(*network, labels, guidance, precision);
  return [network, predictor](const torch::Tensor& x_t, const torch::Tensor& t) {
    return predictor(x_t, t);  // `network` lives as long as the predictor
  };
}

int64_t network_batch(int64_t images, double guidance) {
  return guidance == 1.0 || guidance == 0.0 ? images : 2 * images;
}

std::vector<int64_t> classes_in_turn(const std::vector<int64_t>& classes, int64_t count) {
  std::vector<int64_t> result;
  if (classes.empty()) return result;
  const auto m = static_cast<int64_t>(classes.size());
  result.reserve(count);
  for (int64_t k = 0; k < count; ++k) result.push_back(classes[k * m / count]);
  return result;
}

std::vector<int64_t> all_classes(const ModelConfig& model) {
  std::vector<int64_t> classes(std::max(0, model.num_classes));
  for (size_t i = 0; i < classes.size(); ++i) classes[i] = static_cast<int64_t>(i);
  return classes;
}

torch::Tensor label_slice(const std::vector<int64_t>& labels, int64_t first, int64_t count) {
  if (labels.empty()) return {};
  return torch::tensor(std::vector<int64_t>(labels.begin() + first, labels.begin() + first + count),
                       torch::kLong);
}

std::string class_name(const Config& config, int64_t index) {
  const auto& names = config.data.classes;
  if (index >= 0 && index < static_cast<int64_t>(names.size())) return names[index];
  return std::to_string(index);
}

int64_t resolve_class(const std::string& value, const Config& config) {
  const int64_t count = config.model.num_classes;
  if (count == 0) {
    throw Error(ErrorKind::usage,
                "--class " + value + ": this model is unconditional (trained without "
                "data.labels folders); sample it without --class, or train a class-conditional "
                "model (configs/fashion_mnist_cond.json)");
  }
  const auto& names = config.data.classes;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == value) return static_cast<int64_t>(i);
  }
  int64_t index = -1;
  const auto parsed = std::from_chars(value.data(), value.data() + value.size(), index);
  if (parsed.ec == std::errc() && parsed.ptr == value.data() + value.size() && index >= 0 &&
      index < count) {
    return index;
  }
  std::string known;
  for (int64_t i = 0; i < count && i < 50; ++i) {
    const std::string name = class_name(config, i);
    known += (i ? ", " : "") + (name == std::to_string(i) ? name : std::to_string(i) + " " + name);
  }
  if (count > 50) known += ", ...";
  throw Error(ErrorKind::usage, "--class " + value + ": the model has no such class; its " +
                                    std::to_string(count) + " classes are (index name) " + known);
}

SampleClasses plan_sample_classes(const std::vector<std::string>& requested, const Config& config,
                                  int64_t num_images) {
  SampleClasses plan;
  if (config.model.num_classes == 0) {
    if (!requested.empty()) resolve_class(requested.front(), config);  // throws its refusal
    if (config.sample.guidance != 1.0) {
      throw Error(ErrorKind::usage,
                  "--guidance (sample.guidance " + std::to_string(config.sample.guidance) +
                      ") steers a class-conditional model; this model is unconditional: drop "
                      "it, or train with data.labels folders");
    }
    return plan;
  }
  std::vector<int64_t> asked;
  for (const std::string& value : requested) asked.push_back(resolve_class(value, config));
  if (asked.empty()) asked = all_classes(config.model);
  for (int64_t label : asked) {
    if (std::find(plan.classes.begin(), plan.classes.end(), label) == plan.classes.end()) {
      plan.classes.push_back(label);
    }
  }
  plan.labels = classes_in_turn(asked, num_images);
  plan.subfolders = plan.classes.size() > 1;
  return plan;
}

}  // namespace ddpm
