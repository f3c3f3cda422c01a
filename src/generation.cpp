// The sampling core of `ddpm sample` and ddpm::Pipeline; see generation.h.
#include "ddpm/generation.h"

#include "ddpm/config_json.h"
#include "ddpm/device.h"
#include "ddpm/guidance.h"
#include "ddpm/log.h"
#include "ddpm/precision.h"
#include "ddpm/sampler_kind.h"
#include "ddpm/weights.h"

namespace ddpm {
namespace {

// The value an override assigns to sample.<key>, or nullptr when none does.
const std::string* assigned(const std::vector<std::string>& overrides, const std::string& key,
                            std::string& value) {
  const std::string prefix = "sample." + key + "=";
  const std::string* found = nullptr;
  for (const std::string& assignment : overrides) {
    if (assignment.starts_with(prefix)) {
      value = assignment.substr(prefix.size());
      found = &value;
    }
  }
  return found;
}

}  // namespace

Config sampling_config(nlohmann::json config, const std::vector<std::string>& overrides) {
  const nlohmann::json inherited = config.contains("sample") ? config["sample"] : nlohmann::json();
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  std::string value;
  if (assigned(overrides, "sampler", value) && inherited.is_object()) {
    const std::string name = config["sample"].value("sampler", "");
    const SamplerInfo& info = sampler_info(sampler_from_name(name));
    nlohmann::json& sample = config["sample"];
    if (sample.value("spacing", "") == "karras" && !info.sigma_space &&
        !assigned(overrides, "spacing", value)) {
      log::info("the checkpoint's sample.spacing karras does not suit " + info.name +
                "; using uniform (pass --spacing to choose)");
      sample["spacing"] = "uniform";
    }
    if (sample.value("eta", 0.0) != 0.0 && info.kind != SamplerKind::ddim &&
        !assigned(overrides, "eta", value)) {
      log::info("the checkpoint's sample.eta applies to ddim only; " + info.name +
                " runs without");
      sample["eta"] = 0.0;
    }
  }
  return config_from_json(config);
}

SamplingModel load_sampling_model(const ModelSource& source, const Config& config,
                                  torch::Device device, bool use_ema) {
  UNet model(config.model, config.data);
  load_state_dict(*model, use_ema ? source.ema : source.model,
                  "'" + source.path.string() + "'");
  model->to(device);
  model->set_channels_last(prefers_channels_last(device));
  model->eval();
  return SamplingModel{model, NoiseSchedule(config.diffusion).to(device), device,
                       use_ema || source.diffusers};
}

torch::Tensor sample_batch(SamplingModel& model, const Config& config,
                           const SamplerOptions& sampler, const std::vector<int64_t>& labels,
                           int64_t first, int64_t count, const torch::Tensor& noise,
                           const SamplerCallback& callback) {
  const SampleConfig& sample = config.sample;
  torch::InferenceMode inference;  // no autograd bookkeeping at all
  const EpsilonPredictor predictor =
      guided_predictor(model.model, label_slice(labels, first, count), sample.guidance,
                       precision_from_name(sample.precision, "sample.precision"));
  return sample_images(predictor, model.schedule, sampler, first, count,
                       {config.data.channels, config.data.height, config.data.width}, sample.seed,
                       model.device, callback,
                       noise.defined() ? noise.slice(0, first, first + count) : noise)
      .cpu();
}

}  // namespace ddpm
