// One optimisation step; see train_step.h.
#include "ddpm/train_step.h"

#include <ATen/autocast_mode.h>

#include <cmath>
#include <limits>

#include "ddpm/error.h"
#include "ddpm/fused_adam.h"
#include "ddpm/seed_mix.h"

namespace ddpm {
namespace {

// Autocast to bf16 on CUDA for the forward pass and the loss, restored on scope exit.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool enabled) : enabled_(enabled) {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
  }
  ~Bf16Autocast() {
    if (!enabled_) return;
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool enabled_;
};

// The global L2 norm of the gradients (before clipping), after scaling them down to max_norm
// when above it: torch::nn::utils::clip_grad_norm_'s arithmetic, with multi-tensor kernels
// instead of two operations per parameter.
double clip_gradients(const std::vector<torch::Tensor>& parameters, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> gradients;
  for (const auto& parameter : parameters) {
    if (parameter.grad().defined()) gradients.push_back(parameter.grad());
  }
  if (gradients.empty()) return 0.0;
  const double total = at::linalg_vector_norm(at::stack(at::_foreach_norm(gradients, 2)), 2)
                           .item<double>();
  const double coefficient = max_norm / (total + 1e-6);
  if (coefficient < 1.0) at::_foreach_mul_(gradients, coefficient);
  return total;
}

}  // namespace

torch::Tensor drop_classes(const torch::Tensor& labels, double p, int64_t no_class,
                           const NoiseKey& noise) {
  torch::Tensor result = labels.to(torch::kCPU, torch::kLong).clone();
  int64_t* values = result.data_ptr<int64_t>();
  const uint64_t base =
      splitmix64(splitmix64(noise.seed ^ 0x636C617373ULL) ^ static_cast<uint64_t>(noise.step));
  for (int64_t i = 0; i < result.numel(); ++i) {
    const uint64_t h = splitmix64(base ^ static_cast<uint64_t>(noise.first_example + i));
    if (double(h >> 11) * 0x1.0p-53 < p) values[i] = no_class;  // uniform in [0, 1)
  }
  return result;
}

double learning_rate(const TrainConfig& train, int64_t step) {
  if (train.warmup_steps <= 0) return train.lr;
  return train.lr * std::min(1.0, double(step + 1) / double(train.warmup_steps));
}

LossOptions loss_options(const Config& config) {
  return {prediction_from_name(config.diffusion.prediction),
          config.train.loss_weighting == "min_snr", config.train.min_snr_gamma};
}

TrainStep::TrainStep(UNet& model, UNet& ema_model, const NoiseSchedule& schedule,
                     const TrainConfig& options, const LossOptions& loss, bool bf16,
                     ProcessGroup* group)
    : model_(model),
      schedule_(schedule),
      options_(options),
      bf16_(bf16),
      group_(group),
      parameters_(model->parameters()),
      optimizer_(parameters_, torch::optim::AdamOptions(options.lr)
                                  .betas({options.adam_beta1, options.adam_beta2})
                                  .eps(options.adam_eps)
                                  .weight_decay(options.weight_decay)),
      ema_(*model, *ema_model, {options.ema_decay, options.ema_warmup, options.ema_power}),
      loss_options_(loss),
      noise_(schedule.timesteps()) {}

TrainStep::Result TrainStep::run(const torch::Tensor& x0, const NoiseKey& noise, int64_t step,
                                 bool stop_requested, const torch::Tensor& labels) {
  const NoiseDraw draw = noise_.take(x0, noise);
  // The next step's draws, made while this one runs (the step after `step` is step + 1 of the
  // same examples, in ddpm train and in ddpm bench).
  noise_.prefetch(x0, {noise.seed, noise.step + 1, noise.first_example});
  const double lr = learning_rate(options_, step);
  for (auto& group : optimizer_.param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  }
  optimizer_.zero_grad(/*set_to_none=*/true);
  if (model_->class_conditional() != labels.defined()) {
    throw Error(ErrorKind::runtime, model_->class_conditional()
                                        ? "a class-conditional model trains on labelled images"
                                        : "an unconditional model trains without labels");
  }
  const torch::Tensor classes =
      labels.defined()
          ? drop_classes(labels, options_.class_dropout, model_->no_class(), noise)
                .to(x0.device(), /*non_blocking=*/true)
          : labels;
  // Gradient accumulation: the micro-batches' losses are means over equal parts of the batch,
  // so their gradients, each scaled by 1 / parts, sum to the gradient of the whole batch's mean.
  const int64_t parts = options_.grad_accumulation;
  if (x0.size(0) % parts != 0) {
    throw Error(ErrorKind::config,
                "train.grad_accumulation (" + std::to_string(parts) + ") must divide each " +
                    "process's part of the batch (" + std::to_string(x0.size(0)) + ")");
  }
  const int64_t micro = x0.size(0) / parts;
  Result result;
  for (int64_t part = 0; part < parts; ++part) {
    const auto range = [&](const torch::Tensor& value) {
      return parts == 1 ? value : value.narrow(0, part * micro, micro);
    };
    const torch::Tensor part_classes = classes.defined() ? range(classes) : classes;
    const EpsilonPredictor predictor = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
      return model_->forward(x_t, t, part_classes);
    };
    torch::Tensor loss;
    {
      Bf16Autocast autocast(bf16_);
      loss = training_loss(predictor, schedule_, range(x0), {range(draw.t), range(draw.eps)},
                           loss_options_);
    }
    if (parts > 1) loss = loss / double(parts);
    loss.backward();
    result.loss = part == 0 ? loss.detach() : result.loss + loss.detach();
  }
  result.stop = stop_requested;
  torch::Tensor stop_votes;
  if (group_ != nullptr) {
    // The vote travels with the gradients and is read after the norm, so it costs no extra
    // host synchronisation.
    stop_votes = torch::full({1}, stop_requested ? 1.0f : 0.0f, x0.options());
    group_->sum(stop_votes);
    std::vector<torch::Tensor> gradients;
    for (auto& parameter : parameters_) {
      if (!parameter.grad().defined()) parameter.mutable_grad() = torch::zeros_like(parameter);
      gradients.push_back(parameter.grad());
    }
    group_->average(gradients);
  }
  const double clip = options_.grad_clip > 0 ? options_.grad_clip
                                             : std::numeric_limits<double>::infinity();
  result.grad_norm = clip_gradients(parameters_, clip);
  result.applied = std::isfinite(result.grad_norm);
  if (stop_votes.defined()) result.stop = stop_votes.item<float>() > 0.0f;
  result.ema_decay = 0.0;
  if (result.applied) {
    fused_adam_step(optimizer_);
    result.ema_decay = ema_.update(step + 1);
  } else {
    optimizer_.zero_grad(/*set_to_none=*/true);
  }
  return result;
}

}  // namespace ddpm
