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

// Whether an override assigns sample.<key>.
bool assigns(const std::vector<std::string>& overrides, const std::string& key) {
  const std::string prefix = "sample." + key + "=";
  for (const std::string& assignment : overrides) {
    if (assignment.starts_with(prefix)) return true;
  }
  return false;
}

}  // namespace

Config sampling_config(nlohmann::json config, const std::vector<std::string>& overrides) {
  const bool inherits = config.contains("sample");  // the checkpoint has sample settings
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  if (assigns(overrides, "sampler") && inherits) {
    const std::string name = config["sample"].value("sampler", "");
    const SamplerInfo& info = sampler_info(sampler_from_name(name));
    nlohmann::json& sample = config["sample"];
    if (sample.value("spacing", "") == "karras" && !info.sigma_space &&
        !assigns(overrides, "spacing")) {
      log::info("the checkpoint's sample.spacing karras does not suit " + info.name +
                "; using uniform (pass --spacing to choose)");
      sample["spacing"] = "uniform";
    }
    if (sample.value("eta", 0.0) != 0.0 && info.kind != SamplerKind::ddim &&
        !assigns(overrides, "eta")) {
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
