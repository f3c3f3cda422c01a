// One optimisation step; see train_step.h.
#include "train/train_step.h"

#include <cmath>
#include <limits>

#include "base/seed_mix.h"
#include "ddpm/error.h"
#include "train/fused_adam.h"

namespace ddpm {
namespace {

// The gradients of the parameters that have one.
std::vector<torch::Tensor> gradients_of(const std::vector<torch::Tensor>& parameters) {
  std::vector<torch::Tensor> gradients;
  for (const auto& parameter : parameters) {
    if (parameter.grad().defined()) gradients.push_back(parameter.grad());
  }
  return gradients;
}

// The global L2 norm of the gradients (before clipping, a float32 scalar on their device), after
// scaling them down to max_norm when above it: torch.nn.utils.clip_grad_norm_'s arithmetic
// (coefficient max_norm / (norm + 1e-6) clamped to 1), with multi-tensor kernels and without
// reading the norm on the host.
torch::Tensor clip_gradients(const std::vector<torch::Tensor>& gradients, double max_norm) {
  torch::NoGradGuard no_grad;
  if (gradients.empty()) return torch::zeros({});
  const torch::Tensor total =
      at::linalg_vector_norm(at::stack(at::_foreach_norm(gradients, 2)), 2).to(torch::kFloat);
  if (std::isfinite(max_norm)) {
    at::_foreach_mul_(gradients, (max_norm / (total + 1e-6)).clamp_max(1.0));
  }
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

LossScalerOptions loss_scaler_options(const TrainConfig& train) {
  return {train.loss_scale_init, train.loss_scale_growth, train.loss_scale_backoff,
          train.loss_scale_interval, train.loss_scale_min};
}

LossOptions loss_options(const Config& config) {
  LossOptions options;
  options.prediction = config.diffusion.prediction;
  options.min_snr = config.train.loss_weighting == LossWeighting::min_snr;
  options.min_snr_gamma = config.train.min_snr_gamma;
  options.kind = config.train.loss;
  options.vlb_weight = config.train.vlb_weight;
  options.variance = config.model.learn_variance ? Variance::learned : config.sample.variance;
  return options;
}

TrainStep::TrainStep(UNet& model, UNet& ema_model, const NoiseSchedule& schedule,
                     const TrainConfig& options, const LossOptions& loss, Precision precision,
                     ProcessGroup* group, const StepObjective* objective)
    : model_(model),
      schedule_(schedule),
      options_(options),
      precision_(precision),
      group_(group),
      parameters_(model->parameters()),
      optimizer_(parameters_, torch::optim::AdamOptions(options.lr)
                                  .betas({options.adam_beta1, options.adam_beta2})
                                  .eps(options.adam_eps)
                                  .weight_decay(options.weight_decay)),
      ema_(*model, *ema_model, {options.ema_decay, options.ema_warmup, options.ema_power}),
      loss_options_(loss),
      objective_(objective),
      noise_(schedule.timesteps()) {
  if (precision == Precision::fp16) scaler_.emplace(loss_scaler_options(options));
  if (options.timestep_sampling == TimestepSampling::loss_aware) {
    resampler_.emplace(schedule.timesteps());
  }
}

void check_grad_accumulation(int64_t batch, int64_t parts, const std::string& batch_description) {
  if (parts < 1 || batch % parts != 0) {
    throw Error(ErrorKind::config, "train.grad_accumulation (" + std::to_string(parts) +
                                       ") must divide each process's part of the batch (" +
                                       std::to_string(batch) + batch_description + ")");
  }
}

torch::Tensor TrainStep::accumulate_gradients(const torch::Tensor& x0, const NoiseDraw& draw,
                                              const torch::Tensor& classes,
                                              torch::Tensor* example_losses_out) {
  // Gradient accumulation: the micro-batches' losses are means over equal parts of the batch,
  // so their gradients, each scaled by 1 / parts, sum to the gradient of the whole batch's mean.
  const int64_t parts = options_.grad_accumulation;
  check_grad_accumulation(x0.size(0), parts, "");
  const int64_t micro = x0.size(0) / parts;
  torch::Tensor total;
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
      AutocastGuard autocast(precision_, x0.device());
      const NoiseDraw part_draw{range(draw.t), range(draw.eps),
                                draw.weight.defined() ? range(draw.weight) : draw.weight};
      if (objective_ != nullptr) {
        loss = objective_->example_losses(predictor, range(x0), part_draw, part_classes).mean();
      } else if (example_losses_out == nullptr) {
        loss = training_loss(predictor, schedule_, range(x0), part_draw, loss_options_);
      } else {
        const torch::Tensor losses =
            example_losses(predictor, schedule_, range(x0), part_draw, loss_options_);
        loss = (part_draw.weight.defined() ? losses * part_draw.weight : losses).mean();
        const torch::Tensor detached = losses.detach();
        *example_losses_out = part == 0 ? detached : torch::cat({*example_losses_out, detached});
      }
    }
    if (parts > 1) loss = loss / double(parts);
    (scaler_ ? scaler_->scale_loss(loss) : loss).backward();
    total = part == 0 ? loss.detach() : total + loss.detach();
  }
  return total;
}

void TrainStep::finish_update(const torch::Tensor& x0, bool stop_requested, int64_t step,
                              Result& result) {
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
  // The gradients are summed over the ranks before they are unscaled: every rank uses the same
  // scale, so every rank sees the same overflow and skips the same steps.
  const std::vector<torch::Tensor> gradients = gradients_of(parameters_);
  const torch::Tensor overflow = scaler_ ? scaler_->unscale(gradients) : torch::Tensor();
  const double clip = options_.grad_clip > 0 ? options_.grad_clip
                                             : std::numeric_limits<double>::infinity();
  const torch::Tensor norm = clip_gradients(gradients, clip);
  // The step's one host synchronisation: the norm, the overflow flag and the stop vote together.
  std::vector<torch::Tensor> readings = {norm.reshape({1}).to(torch::kFloat)};
  if (overflow.defined()) readings.push_back(overflow.reshape({1}).to(norm.device()));
  if (stop_votes.defined()) readings.push_back(stop_votes.reshape({1}).to(norm.device()));
  const torch::Tensor host = torch::cat(readings).cpu();
  const float* read = host.data_ptr<float>();
  result.grad_norm = read[0];
  result.overflow = overflow.defined() && (read[1] != 0.0f || !std::isfinite(read[0]));
  result.applied = std::isfinite(result.grad_norm) && !result.overflow;
  if (stop_votes.defined()) result.stop = read[readings.size() - 1] > 0.0f;
  result.loss_scale = 0.0;
  result.scale_collapsed = false;
  if (scaler_) {
    result.scale_collapsed = scaler_->update(result.overflow);
    result.loss_scale = scaler_->scale();
  }
  result.ema_decay = 0.0;
  if (result.applied) {
    fused_adam_step(optimizer_);
    result.ema_decay = ema_.update(step + 1);
  } else {
    optimizer_.zero_grad(/*set_to_none=*/true);
  }
}

TrainStep::Result TrainStep::run(const torch::Tensor& x0, const NoiseKey& noise, int64_t step,
                                 bool stop_requested, const torch::Tensor& labels) {
  NoiseDraw draw = noise_.take(x0, noise);
  if (objective_ != nullptr) objective_->choose_timesteps(draw, noise);
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
          ? drop_classes(labels, objective_ ? 0.0 : options_.class_dropout, model_->no_class(),
                         noise)
                .to(x0.device(), /*non_blocking=*/true)
          : labels;
  Result result;
  if (!resampler_) {
    result.loss = accumulate_gradients(x0, draw, classes, nullptr);
    finish_update(x0, stop_requested, step, result);
    return result;
  }
  NoiseDraw sampled = draw;
  importance_sample(sampled, noise);
  torch::Tensor losses;
  result.loss = accumulate_gradients(x0, sampled, classes, &losses);
  finish_update(x0, stop_requested, step, result);
  record_losses(sampled, losses, noise);
  return result;
}

void TrainStep::importance_sample(NoiseDraw& draw, const NoiseKey& noise) const {
  if (!resampler_->warmed_up()) return;  // uniform t, weights 1
  const TimestepResampler::Draws draws =
      resampler_->draw(timestep_uniforms(noise, draw.t.size(0)));
  draw.t = torch::tensor(draws.t, torch::kLong).to(draw.t.device());
  draw.weight = torch::tensor(draws.weight, torch::kFloat64)
                    .to(draw.eps.device(), torch::kFloat32);
}

void TrainStep::record_losses(const NoiseDraw& draw, const torch::Tensor& losses,
                              const NoiseKey& noise) {
  torch::Tensor pairs = torch::stack({draw.t.to(torch::kFloat64), losses.to(torch::kFloat64)}, 1);
  if (group_ != nullptr) {
    // Each rank's rows at its examples' places in the global batch; the sum gathers them.
    torch::Tensor global = torch::zeros({options_.batch_size, 2}, pairs.options())
                               .to(group_->device());
    global.narrow(0, noise.first_example % options_.batch_size, pairs.size(0))
        .copy_(pairs.to(group_->device()));
    group_->sum(global);
    pairs = global;
  }
  const torch::Tensor host = pairs.cpu().contiguous();
  const double* rows = host.data_ptr<double>();
  std::vector<int64_t> t(host.size(0));
  std::vector<double> values(host.size(0));
  for (int64_t i = 0; i < host.size(0); ++i) {
    t[i] = static_cast<int64_t>(rows[2 * i]);
    values[i] = rows[2 * i + 1];
  }
  resampler_->update(t, values);
}

}  // namespace ddpm
