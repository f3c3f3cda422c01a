// Loading a model for sampling; see sampling_model.h.
#include "interop/sampling_model.h"

#include "base/device.h"
#include "base/log.h"
#include "config/config_json.h"
#include "config/sampler_kind.h"
#include "ddpm/error.h"
#include "model/compiled_network.h"
#include "formats/weights.h"

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

Config sampling_config(const Config& model, const std::vector<std::string>& overrides,
                       const std::function<void(SampleConfig&)>& change) {
  Config config = model;
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  if (change) change(config.sample);
  SampleConfig& sample = config.sample;
  const SampleConfig& given = model.sample;
  if (sample.sampler != given.sampler) {
    const SamplerInfo& info = sampler_info(sample.sampler);
    if (sample.spacing == Spacing::karras && !info.sigma_space && !assigns(overrides, "spacing")) {
      log::info("the checkpoint's sample.spacing karras does not suit " + info.name +
                "; using uniform (pass --spacing to choose)");
      sample.spacing = Spacing::uniform;
    }
    if (sample.eta != 0.0 && info.kind != SamplerKind::ddim && !assigns(overrides, "eta")) {
      log::info("the checkpoint's sample.eta applies to ddim only; " + info.name +
                " runs without");
      sample.eta = 0.0;
    }
  }
  validate(config);
  return config;
}

void check_sampling_precision(const ModelSource& source, const Config& config) {
  if (!source.package || config.sample.precision == source.package->precision) return;
  const std::string compiled = precision_name(source.package->precision);
  const std::string asked = precision_name(config.sample.precision);
  throw Error(ErrorKind::usage,
              "'" + source.path.string() + "' was compiled for " + compiled + " and computes in "
              "it; sampling it in " + asked + " is not possible: drop --precision "
              "(sample.precision) or pass " + compiled + ", or compile the checkpoint with "
              "ddpm compile --precision " + asked);
}

SamplingModel load_sampling_model(const ModelSource& source, const Config& config,
                                  torch::Device device, bool use_ema) {
  if (source.package) {
    const PackageInfo& package = *source.package;
    check_sampling_precision(source, config);
    if (!use_ema && package.ema) {
      throw Error(ErrorKind::usage,
                  "'" + source.path.string() + "' was compiled from the EMA weights; for the "
                  "raw ones (--no-ema) compile the checkpoint with ddpm compile --weights model");
    }
    auto network = std::make_shared<CompiledNetwork>(package, device);
    return SamplingModel{network, UNet(nullptr), NoiseSchedule(config.diffusion).to(device),
                         device, package.ema};
  }
  UNet model(config.model, config.data);
  load_state_dict(*model, use_ema ? source.ema : source.model,
                  "'" + source.path.string() + "'");
  model->to(device);
  model->set_channels_last(prefers_channels_last(device));
  model->eval();
  return SamplingModel{std::make_shared<UNetNetwork>(model), model,
                       NoiseSchedule(config.diffusion).to(device), device,
                       use_ema || source.diffusers};
}

}  // namespace ddpm
