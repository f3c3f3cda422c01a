// diffusers' configs and ours, both ways: a UNet2DModel's config.json gives the data and model
// sections, a scheduler's scheduler_config.json the diffusion and sample sections.
//
// A field absent from a diffusers config means diffusers' default, which often differs from
// DDPM's (attention_head_dim 8, norm_eps 1e-5, flip_sin_to_cos true, freq_shift 0,
// downsample_padding 1; DDPMScheduler's variance_type fixed_small). What our UNet cannot run
// (another time embedding, scale-shift conditioning, another activation, class labels, ...) is
// refused naming the field, its value and what we support.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace ddpm {

// The Config of a UNet2DModel config and its scheduler's config (nullptr: none; then
// DDPMScheduler's defaults, with a warning). Throws ddpm::Error (config) starting with `source`
// for anything we cannot run. Fields that only change how diffusers samples and that ddpm does
// not reproduce (steps_offset, thresholding, ...) become lines in `warnings`, as do fields this
// version does not know.
Config config_from_diffusers(const nlohmann::json& unet, const nlohmann::json* scheduler,
                             const std::string& source, std::vector<std::string>& warnings);

// The scheduler half of config_from_diffusers: the diffusion and sample sections of `config`
// from a scheduler config (nullptr: DDPMScheduler's defaults); `file` starts every message.
void read_diffusers_scheduler(const nlohmann::json* scheduler, const std::string& file,
                              Config& config, std::vector<std::string>& warnings);

// unet/config.json for the config's model, every field written out. Throws ddpm::Error (config)
// when UNet2DModel cannot express the model: a fixed number of heads (model.attention_heads)
// over attention levels of different widths.
nlohmann::json diffusers_unet_config(const Config& config);

// scheduler/scheduler_config.json: a DDPMScheduler with the config's noise schedule (the betas
// themselves, as trained_betas, when no named diffusers schedule is the same) and its sampling
// defaults. A sampling choice diffusers has no name for (sample.spacing quadratic) is a line
// in `warnings`. A distilled student's (distill.start_steps > 0) is a DDIMScheduler on its
// trailing grid, with its steps in _ddpm_sample_steps.
nlohmann::json diffusers_scheduler_config(const Config& config, std::vector<std::string>& warnings);

// model_index.json of a DDPMPipeline (a DDIMPipeline for a distilled student).
nlohmann::json diffusers_pipeline_index(const Config& config);

}  // namespace ddpm
