// A model loaded for sampling from wherever its weights are (model_source.h), with its config
// and the sample settings a request overrides: what `ddpm sample` and ddpm::Pipeline load
// before they call the sampling core (diffusion/generation.h).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "diffusion/schedule.h"
#include "interop/model_source.h"
#include "model/network.h"
#include "model/unet.h"

namespace ddpm {

// The model's config with a request's sample settings: `overrides` ("sample.steps=20", any key)
// applied in order, then `change` (typed settings), then validated. When they change the
// sampler, a spacing or eta the model's config gave that the new sampler cannot take (karras for
// ddpm or ddim, eta for anything but ddim) gives way to the default, with a note in the log;
// values the overrides set themselves are left to the checks.
Config sampling_config(const Config& model, const std::vector<std::string>& overrides,
                       const std::function<void(SampleConfig&)>& change = {});

// A model on a device, ready to sample: the network the sampling core calls — its weights (EMA
// or raw) in a UNet in eval mode, channels-last where that pays, or a compiled package — and its
// noise schedule (on the same device).
struct SamplingModel {
  std::shared_ptr<Network> network;
  UNet model;  // the eager UNet behind `network`; empty (nullptr) for a compiled package
  NoiseSchedule schedule;
  torch::Device device;
  bool ema;  // false: the raw weights (a diffusers folder has only one set)
};
// A compiled package (source.package) is checked against the device (compiled_network.h) and
// against config.sample.precision: it computes in the precision it was compiled for, and
// sampling in another is refused (ddpm::Error, usage). It holds the weights it was compiled
// from: `use_ema` false is refused for a package of the EMA weights.
// Refuses (ddpm::Error, usage) sampling a compiled package in another precision than its own.
void check_sampling_precision(const ModelSource& source, const Config& config);
SamplingModel load_sampling_model(const ModelSource& source, const Config& config,
                                  torch::Device device, bool use_ema);

}  // namespace ddpm
