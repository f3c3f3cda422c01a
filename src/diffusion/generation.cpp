// The sampling core; see generation.h.
#include "diffusion/generation.h"

#include <algorithm>
#include <sstream>

#include "ddpm/error.h"
#include "diffusion/guidance.h"

namespace ddpm {
namespace {

// Eval mode for a scope, then the model's mode before.
class EvalMode {
 public:
  explicit EvalMode(UNet& model) : model_(model), was_training_(model->is_training()) {
    model_->eval();
  }
  ~EvalMode() { model_->train(was_training_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  UNet& model_;
  bool was_training_;
};

// Refuses a batch the network cannot take whole (a compiled package's maximum) before any work.
void check_network_batch(const Network& network, const SampleSettings& settings, int64_t count) {
  const int64_t limit = network.max_batch();
  const int64_t batch = network_batch(count, settings.guidance);
  if (limit <= 0 || batch <= limit) return;
  std::string why = "a batch of " + std::to_string(count) + " images";
  if (batch != count) {
    std::ostringstream guidance;
    guidance << settings.guidance;
    why += " with guidance " + guidance.str() + " (conditional and "
           "unconditional together: " + std::to_string(batch) + " per network call)";
  }
  throw Error(ErrorKind::usage,
              why + " is over the " + std::to_string(limit) + " images per call the compiled "
              "package takes (ddpm compile --max-batch): lower sample.batch_size (--batch) "
              "to at most " + std::to_string(batch == count ? limit : limit / 2) +
              ", or compile the package again with a larger --max-batch");
}

}  // namespace

SampleSettings sample_settings(const Config& config) {
  SampleSettings settings;
  settings.solver = sampler_options(config.sample, config.diffusion);
  settings.guidance = config.sample.guidance;
  settings.precision = config.sample.precision;
  settings.seed = config.sample.seed;
  settings.batch_size = std::max(1, config.sample.batch_size);
  settings.image_shape = {config.data.channels, config.data.height, config.data.width};
  settings.repaint = {config.sample.jump_length, config.sample.jump_n_sample};
  return settings;
}

int sample_evaluations(const SampleSettings& settings, const SampleInputs& inputs,
                       int64_t timesteps) {
  const SamplerOptions& solver = settings.solver;
  if (inputs.mask.defined()) {
    return repaint_evaluations(timesteps, solver.steps, settings.repaint.jump_length,
                               settings.repaint.jump_n_sample);
  }
  const int first = inputs.init.defined() ? first_step_for_strength(solver.steps, inputs.strength)
                                          : 0;
  return sampler_evaluations(solver.kind, solver.steps - first);  // the steps run
}

torch::Tensor sample_batch(Network& model, const NoiseSchedule& schedule,
                           const SampleSettings& settings, const SampleInputs& inputs,
                           int64_t first, int64_t count, const SamplerCallback& callback) {
  check_network_batch(model, settings, count);
  torch::InferenceMode inference;  // no autograd bookkeeping at all
  const EpsilonPredictor predictor = guided_predictor(
      model, label_slice(inputs.labels, first, count), settings.guidance, settings.precision);
  const auto rows = [&](const torch::Tensor& all) {
    return all.defined() ? all.slice(0, first, first + count) : all;
  };
  ChainStart start(rows(inputs.x_T));
  start.init = rows(inputs.init);
  start.mask = rows(inputs.mask);
  start.strength = inputs.strength;
  start.repaint = settings.repaint;
  return sample_images(predictor, schedule, settings.solver, first, count, settings.image_shape,
                       settings.seed, schedule.device(), callback, start)
      .cpu();
}

torch::Tensor sample_batch(UNet& model, const NoiseSchedule& schedule,
                           const SampleSettings& settings, const SampleInputs& inputs,
                           int64_t first, int64_t count, const SamplerCallback& callback) {
  const EvalMode eval(model);
  UNetNetwork network(model);
  return sample_batch(network, schedule, settings, inputs, first, count, callback);
}

void sample_all(Network& model, const NoiseSchedule& schedule, const SampleSettings& settings,
                const SampleInputs& inputs, int64_t num_images,
                const std::function<void(int64_t first, const torch::Tensor& images)>& take,
                const BatchStepCallback& on_step) {
  check_network_batch(model, settings, std::min(settings.batch_size, num_images));
  for (int64_t first = 0; first < num_images; first += settings.batch_size) {
    const int64_t count = std::min(settings.batch_size, num_images - first);
    SamplerCallback callback;
    if (on_step) {
      callback = [&](int step, int total, const torch::Tensor& x, const torch::Tensor& x0) {
        on_step(first, count, step, total, x, x0);
      };
    }
    take(first, sample_batch(model, schedule, settings, inputs, first, count, callback));
  }
}

void sample_all(UNet& model, const NoiseSchedule& schedule, const SampleSettings& settings,
                const SampleInputs& inputs, int64_t num_images,
                const std::function<void(int64_t first, const torch::Tensor& images)>& take,
                const BatchStepCallback& on_step) {
  const EvalMode eval(model);
  UNetNetwork network(model);
  sample_all(network, schedule, settings, inputs, num_images, take, on_step);
}

torch::Tensor invert_all(Network& model, const NoiseSchedule& schedule,
                         const SampleSettings& settings, const SampleInputs& inputs,
                         const BatchStepCallback& on_step) {
  if (!inputs.init.defined()) {
    throw Error(ErrorKind::runtime, "invert_all: inversion needs the images (SampleInputs::init)");
  }
  const int64_t num_images = inputs.init.size(0);
  std::vector<torch::Tensor> batches;
  check_network_batch(model, settings, std::min(settings.batch_size, num_images));
  torch::InferenceMode inference;
  for (int64_t first = 0; first < num_images; first += settings.batch_size) {
    const int64_t count = std::min(settings.batch_size, num_images - first);
    const EpsilonPredictor predictor =
        guided_predictor(model, label_slice(inputs.labels, first, count), settings.guidance,
                         settings.precision);
    SamplerCallback callback;
    if (on_step) {
      callback = [&](int step, int total, const torch::Tensor& x, const torch::Tensor& x0) {
        on_step(first, count, step, total, x, x0);
      };
    }
    const torch::Tensor images =
        inputs.init.slice(0, first, first + count).to(schedule.device(), torch::kFloat32);
    batches.push_back(
        invert_images(predictor, schedule, settings.solver, images, callback).cpu());
  }
  return torch::cat(batches);
}

torch::Tensor invert_all(UNet& model, const NoiseSchedule& schedule,
                         const SampleSettings& settings, const SampleInputs& inputs,
                         const BatchStepCallback& on_step) {
  const EvalMode eval(model);
  UNetNetwork network(model);
  return invert_all(network, schedule, settings, inputs, on_step);
}

}  // namespace ddpm
