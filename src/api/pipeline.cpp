// ddpm::Pipeline (ddpm.h): a model loaded for sampling, on the same calls as `ddpm sample`
// (generation.h).
#include <nlohmann/json.hpp>

#include "api/pipeline_state.h"
#include "api/request_inputs.h"
#include "base/device.h"
#include "base/log.h"
#include "config/config_json.h"
#include "config/sampler_kind.h"
#include "ddpm/ddpm.h"
#include "ddpm/ddpm_tensor.h"
#include "diffusion/generation.h"
#include "diffusion/guidance.h"
#include "diffusion/timestep_grid.h"
#include "formats/image_io.h"
#include "formats/image_tensor.h"
#include "interop/model_source.h"
#include "interop/sampling_model.h"

namespace ddpm {

namespace {

// The request's "sample.KEY=VALUE" overrides, checked to be of the sample section.
const std::vector<std::string>& sample_overrides(const SampleRequest& request) {
  for (const std::string& assignment : request.overrides) {
    if (!assignment.starts_with("sample.")) {
      throw Error(ErrorKind::usage, "SampleRequest::overrides sets keys of the sample section "
                                    "only (sample.KEY=VALUE), got '" + assignment + "'");
    }
  }
  return request.overrides;
}

// The request's typed fields on the sample section (after its overrides, as `ddpm sample`'s
// flags come after its --set).
void apply_request(const SampleRequest& request, SampleConfig& sample) {
  if (request.num_images < 0) {
    throw Error(ErrorKind::usage, "SampleRequest::num_images must be >= 1 (0: the model's "
                                  "sample.num_images), got " +
                                      std::to_string(request.num_images));
  }
  if (request.num_images > 0) sample.num_images = request.num_images;
  if (request.batch_size) sample.batch_size = *request.batch_size;
  if (!request.sampler.empty()) {
    sample.sampler = choice_from_name<SamplerKind>(request.sampler, "sample.sampler");
  }
  if (request.steps) sample.steps = *request.steps;
  if (request.seed) sample.seed = *request.seed;
  if (request.guidance) sample.guidance = *request.guidance;
  if (!request.precision.empty()) {
    sample.precision = choice_from_name<Precision>(request.precision, "sample.precision");
  }
}

// A request resolved against the model: its config, the class of every image, the settings
// and per-image inputs of the sampling core (all checked before any network call).
struct Resolved {
  Config config;
  SampleClasses classes;
  SampleSettings settings;
  SampleInputs inputs;
};

Resolved resolve(const Pipeline::State& state, const SampleRequest& request) {
  Config config =
      sampling_config(state.source.config, sample_overrides(request),
                      [&](SampleConfig& sample) { apply_request(request, sample); });
  check_sampling_precision(state.source, config);
  SampleClasses classes = plan_sample_classes(request.classes, config, config.sample.num_images);
  SampleSettings settings = sample_settings(config);
  validate_sampler_options(settings.solver, state.model.schedule.timesteps());
  SampleInputs inputs = request_inputs(request, settings, config.sample.num_images);
  inputs.labels = classes.labels;
  return {std::move(config), std::move(classes), std::move(settings), std::move(inputs)};
}

// The request's cancel flag, progress and preview callbacks, at every step of every batch.
BatchStepCallback step_reporter(const SampleRequest& request, int64_t total) {
  return [&request, total](int64_t first, int64_t count, int step, int steps,
                           const torch::Tensor&, const torch::Tensor& x0) {
    if (request.cancel && request.cancel->load()) {
      throw Error(ErrorKind::interrupted, "sampling cancelled at step " +
                                              std::to_string(step + 1) + " of images " +
                                              std::to_string(first) + "-" +
                                              std::to_string(first + count - 1));
    }
    if (request.on_progress) request.on_progress({first, total, count, step + 1, steps});
    const bool preview = request.on_preview && request.preview_every > 0 &&
                         ((step + 1) % request.preview_every == 0 || step + 1 == steps);
    if (preview) {
      const torch::Tensor values = x0.detach().to(torch::kCPU, torch::kFloat32).contiguous();
      const float* data = values.data_ptr<float>();
      request.on_preview({first, count, step + 1, steps,
                          std::vector<float>(data, data + values.numel())});
    }
  };
}

// Runs the request batch by batch; `take` gets each batch ([count, C, H, W] on the CPU).
void run_request(Pipeline::State& state, const SampleRequest& request, const Resolved& resolved,
                 const std::function<void(int64_t, const torch::Tensor&)>& take) {
  const int64_t total = resolved.config.sample.num_images;
  sample_all(*state.model.network, state.model.schedule, resolved.settings, resolved.inputs,
             total, take, step_reporter(request, total));
}

}  // namespace

Pipeline::Pipeline(std::unique_ptr<State> state) : state_(std::move(state)) {}
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;
Pipeline::~Pipeline() = default;

Pipeline Pipeline::load(const std::string& path, const std::string& device, bool ema) {
  ModelSource source = load_sampling_source(path);
  for (const auto& warning : source.warnings) log::warn(warning);
  const Config config = sampling_config(source.config, {});
  const torch::Device where = resolve_device(device);
  SamplingModel model = load_sampling_model(source, config, where, ema);
  return Pipeline(std::make_unique<State>(State{std::move(source), config, std::move(model)}));
}

SamplePlan Pipeline::plan(const SampleRequest& request) const {
  const Resolved resolved = resolve(*state_, request);
  const SampleConfig& sample = resolved.config.sample;
  SamplePlan plan;
  plan.num_images = sample.num_images;
  plan.batch_size = resolved.settings.batch_size;
  plan.sampler = choice_name(sample.sampler);
  plan.steps = sample.steps;
  plan.network_evaluations = sample_evaluations(resolved.settings, resolved.inputs,
                                                state_->model.schedule.timesteps());
  plan.spacing = choice_name(sample.spacing);
  plan.eta = sample.eta;
  plan.variance = choice_name(sample.variance);
  plan.clip_denoised = sample.clip_denoised;
  plan.seed = sample.seed;
  plan.guidance = sample.guidance;
  plan.precision = choice_name(sample.precision);
  plan.image_classes = resolved.classes.labels;
  plan.classes = resolved.classes.classes;
  plan.mode = request_mode(resolved.inputs);
  if (plan.mode == "inpaint") plan.spacing = "leading";  // RePaint's list: multiples of T / steps
  plan.strength = resolved.inputs.strength;
  if (resolved.inputs.mask.defined()) {
    plan.jump_length = resolved.settings.repaint.jump_length;
    plan.jump_n_sample = resolved.settings.repaint.jump_n_sample;
  }
  if (plan.mode == "sample") {
    plan.timesteps = timestep_grid(state_->model.schedule.table(), sample.sampler, sample.steps,
                                   sample.spacing)
                         .timesteps;
  }
  const Config& trained = state_->source.config;
  if (trained.distill.start_steps > 0 &&
      (sample.sampler != SamplerKind::ddim || sample.steps != trained.sample.steps ||
       sample.spacing != trained.sample.spacing || sample.eta != 0.0)) {
    plan.warnings.push_back(
        "this model was distilled for ddim, " + std::to_string(trained.sample.steps) +
        " steps, " + choice_name(trained.sample.spacing) + " spacing (its sample section); " +
        plan.sampler + ", " + std::to_string(plan.steps) + " steps, " + plan.spacing +
        " spacing runs a chain it was not trained for: expect worse images");
  }
  return plan;
}

void Pipeline::generate_batches(
    const SampleRequest& request,
    const std::function<void(int64_t first, const at::Tensor& images)>& take) const {
  run_request(*state_, request, resolve(*state_, request), take);
}

std::vector<float> Pipeline::invert(const SampleRequest& request) const {
  if (request.init_images.empty() || !request.masks.empty() || request.strength) {
    throw Error(ErrorKind::usage, "Pipeline::invert takes SampleRequest::init_images, the images "
                                  "to invert, and no masks or strength");
  }
  SampleRequest settings_only = request;
  settings_only.init_images.clear();
  if (settings_only.sampler.empty()) settings_only.sampler = "ddim";
  Resolved resolved = resolve(*state_, settings_only);
  const int64_t total = resolved.config.sample.num_images;
  resolved.inputs.init =
      image_rows(request.init_images, resolved.settings.image_shape, total, "init_images");
  const torch::Tensor x_T = invert_all(*state_->model.network, state_->model.schedule,
                                       resolved.settings, resolved.inputs,
                                       step_reporter(request, total))
                                .contiguous();
  const float* data = x_T.data_ptr<float>();
  return std::vector<float>(data, data + x_T.numel());
}

std::vector<GeneratedImage> Pipeline::generate(const SampleRequest& request) const {
  const Resolved resolved = resolve(*state_, request);
  const std::vector<int64_t>& labels = resolved.classes.labels;
  std::vector<GeneratedImage> images;
  run_request(*state_, request, resolved, [&](int64_t first, const torch::Tensor& batch) {
    for (int64_t i = 0; i < batch.size(0); ++i) {
      Image image = tensor_to_image(batch[i]);
      GeneratedImage out;
      out.index = first + i;
      out.height = image.height;
      out.width = image.width;
      out.channels = image.channels;
      out.pixels = std::move(image.pixels);
      if (!labels.empty()) {
        out.class_index = labels[out.index];
        out.class_name = class_name(state_->config, out.class_index);
      }
      images.push_back(std::move(out));
    }
  });
  return images;
}

at::Tensor Pipeline::generate_tensor(const SampleRequest& request) const {
  std::vector<torch::Tensor> batches;
  generate_batches(request, [&](int64_t, const torch::Tensor& batch) { batches.push_back(batch); });
  return torch::cat(batches);
}

int Pipeline::channels() const { return static_cast<int>(state_->config.data.channels); }
int Pipeline::height() const { return static_cast<int>(state_->config.data.height); }
int Pipeline::width() const { return static_cast<int>(state_->config.data.width); }
int64_t Pipeline::step() const { return state_->source.step; }
std::string Pipeline::device() const { return state_->model.device.str(); }
std::string Pipeline::config_json() const {
  return config_to_json(state_->source.config).dump(2);
}
std::string Pipeline::source_path() const { return state_->source.path.string(); }

std::string Pipeline::weights() const {
  if (state_->source.diffusers) return "diffusers";
  return state_->model.ema ? "ema" : "raw";
}

std::string Pipeline::device_description() const {
  return describe_device(state_->model.device);
}

std::vector<std::string> Pipeline::class_names() const {
  std::vector<std::string> names;
  for (int64_t label : all_classes(state_->config.model)) {
    names.push_back(class_name(state_->config, label));
  }
  return names;
}

}  // namespace ddpm
