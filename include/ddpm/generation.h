// What `ddpm sample` and ddpm::Pipeline (ddpm.h) share, so that the two cannot drift: the
// sample settings of a request, a model loaded for sampling, and one batch of images. Image k of
// a seed is the same image whichever of the two makes it, in whatever batches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "ddpm/config.h"
#include "ddpm/model_source.h"
#include "ddpm/sampler.h"
#include "ddpm/schedule.h"
#include "ddpm/unet.h"

namespace ddpm {

// The model's config with `overrides` ("sample.steps=20", any key) applied, parsed and
// validated. When they change the sampler, a spacing or eta the config inherited that the new
// sampler cannot take (karras for ddpm or ddim, eta for anything but ddim) gives way to the
// default, with a note in the log; values the overrides set themselves are left to the checks.
Config sampling_config(nlohmann::json config, const std::vector<std::string>& overrides);

// A model on a device, ready to sample: its weights (EMA or raw) in a UNet in eval mode,
// channels-last where that pays, and its noise schedule.
struct SamplingModel {
  UNet model;
  NoiseSchedule schedule;
  torch::Device device;
  bool ema;  // false: the raw weights (a diffusers folder has only one set)
};
SamplingModel load_sampling_model(const ModelSource& source, const Config& config,
                                  torch::Device device, bool use_ema);

// Images first .. first + count - 1 of the request `config.sample` describes, as float32
// [count, C, H, W] in [-1, 1] on the CPU. `labels`: the class of every image of the request
// (plan_sample_classes), empty for an unconditional model; `noise`: x_T of every image of the
// request (row k for image k), or undefined to draw it from the seed. `callback` sees every reverse step.
torch::Tensor sample_batch(SamplingModel& model, const Config& config,
                           const SamplerOptions& sampler, const std::vector<int64_t>& labels,
                           int64_t first, int64_t count, const torch::Tensor& noise = {},
                           const SamplerCallback& callback = {});

}  // namespace ddpm
