// ddpm::Pipeline (ddpm.h): a model loaded for sampling, on the same calls as `ddpm sample`
// (generation.h).
#include <nlohmann/json.hpp>

#include "ddpm/ddpm.h"
#include "ddpm/ddpm_tensor.h"
#include "ddpm/device.h"
#include "ddpm/generation.h"
#include "ddpm/guidance.h"
#include "ddpm/image_io.h"
#include "ddpm/log.h"
#include "ddpm/model_source.h"

namespace ddpm {

struct Pipeline::State {
  ModelSource source;
  Config config;
  SamplingModel model;
};

namespace {

// The request as overrides of the sample section, as `ddpm sample`'s flags are.
std::vector<std::string> request_overrides(const SampleRequest& request) {
  if (request.num_images < 1) {
    throw Error(ErrorKind::usage, "SampleRequest::num_images must be >= 1, got " +
                                      std::to_string(request.num_images));
  }
  std::vector<std::string> overrides;
  for (const std::string& assignment : request.overrides) {
    if (!assignment.starts_with("sample.")) {
      throw Error(ErrorKind::usage, "SampleRequest::overrides sets keys of the sample section "
                                    "only (sample.KEY=VALUE), got '" + assignment + "'");
    }
    overrides.push_back(assignment);
  }
  const auto set = [&](const std::string& key, const nlohmann::json& value) {
    overrides.push_back("sample." + key + "=" + value.dump());
  };
  set("num_images", request.num_images);
  if (request.batch_size) set("batch_size", *request.batch_size);
  if (!request.sampler.empty()) set("sampler", request.sampler);
  if (request.steps) set("steps", *request.steps);
  if (request.seed) set("seed", *request.seed);
  if (request.guidance) set("guidance", *request.guidance);
  if (!request.precision.empty()) set("precision", request.precision);
  return overrides;
}

// Runs the request batch by batch; `take` gets each batch ([count, C, H, W] on the CPU).
void run_request(Pipeline::State& state, const SampleRequest& request, SampleClasses& classes,
                 const std::function<void(int64_t, const torch::Tensor&)>& take) {
  const Config config = sampling_config(state.source.config, request_overrides(request));
  const SampleConfig& sample = config.sample;
  classes = plan_sample_classes(request.classes, config, sample.num_images);
  const SamplerOptions sampler = sampler_options(sample, config.diffusion);
  validate_sampler_options(sampler, state.model.schedule.timesteps());
  for (int64_t first = 0; first < sample.num_images; first += sample.batch_size) {
    const int64_t count = std::min<int64_t>(sample.batch_size, sample.num_images - first);
    const SamplerCallback progress = [&](int step, int total, const torch::Tensor&,
                                         const torch::Tensor&) {
      if (request.cancel && request.cancel->load()) {
        throw Error(ErrorKind::interrupted, "sampling cancelled at step " +
                                                std::to_string(step + 1) + " of images " +
                                                std::to_string(first) + "-" +
                                                std::to_string(first + count - 1));
      }
      if (request.on_progress) {
        request.on_progress({first, sample.num_images, count, step + 1, total});
      }
    };
    take(first, sample_batch(state.model, config, sampler, classes.labels, first, count, {},
                             progress));
  }
}

}  // namespace

Pipeline::Pipeline(std::unique_ptr<State> state) : state_(std::move(state)) {}
Pipeline::Pipeline(Pipeline&&) noexcept = default;
Pipeline& Pipeline::operator=(Pipeline&&) noexcept = default;
Pipeline::~Pipeline() = default;

Pipeline Pipeline::load(const std::string& path, const std::string& device, bool ema) {
  ModelSource source = load_model_source(path);
  for (const auto& warning : source.warnings) log::warn(warning);
  const Config config = sampling_config(source.config, {});
  const torch::Device where = resolve_device(device);
  SamplingModel model = load_sampling_model(source, config, where, ema);
  return Pipeline(std::make_unique<State>(State{std::move(source), config, std::move(model)}));
}

std::vector<GeneratedImage> Pipeline::generate(const SampleRequest& request) const {
  std::vector<GeneratedImage> images;
  SampleClasses classes;
  run_request(*state_, request, classes, [&](int64_t first, const torch::Tensor& batch) {
    for (int64_t i = 0; i < batch.size(0); ++i) {
      Image image = tensor_to_image(batch[i]);
      GeneratedImage out;
      out.index = first + i;
      out.height = image.height;
      out.width = image.width;
      out.channels = image.channels;
      out.pixels = std::move(image.pixels);
      if (!classes.labels.empty()) {
        out.class_index = classes.labels[out.index];
        out.class_name = class_name(state_->config, out.class_index);
      }
      images.push_back(std::move(out));
    }
  });
  return images;
}

at::Tensor Pipeline::generate_tensor(const SampleRequest& request) const {
  std::vector<torch::Tensor> batches;
  SampleClasses classes;
  run_request(*state_, request, classes,
              [&](int64_t, const torch::Tensor& batch) { batches.push_back(batch); });
  return torch::cat(batches);
}

int Pipeline::channels() const { return static_cast<int>(state_->config.data.channels); }
int Pipeline::height() const { return static_cast<int>(state_->config.data.height); }
int Pipeline::width() const { return static_cast<int>(state_->config.data.width); }
int64_t Pipeline::step() const { return state_->source.step; }
std::string Pipeline::device() const { return state_->model.device.str(); }
std::string Pipeline::config_json() const { return state_->source.config.dump(2); }

std::vector<std::string> Pipeline::class_names() const {
  std::vector<std::string> names;
  for (int64_t label : all_classes(state_->config.model)) {
    names.push_back(class_name(state_->config, label));
  }
  return names;
}

}  // namespace ddpm
