// Our config as diffusers' UNet2DModel and scheduler configs and a DDPMPipeline's
// model_index.json; see diffusers_config.h.
#include "interop/diffusers_config.h"

#include <algorithm>
#include <cmath>

#include "config/config_json.h"
#include "ddpm/error.h"
#include "diffusion/schedule.h"

namespace ddpm {
namespace {

using nlohmann::json;

// The diffusers version whose conventions the written configs follow (and its UNet2DModel
// fields, all of which are written).
constexpr const char* kDiffusersVersion = "0.21.0";

bool same_number(double a, double b) {
  return std::abs(a - b) <= 1e-12 * std::max(1.0, std::abs(b));
}

// An integral value as a JSON integer (diffusers' freq_shift is an int).
json number_json(double value) {
  if (value == std::floor(value) && std::abs(value) < 1e15) {
    return json(static_cast<int64_t>(value));
  }
  return json(value);
}

// diffusers' name of a diffusion.prediction.
std::string diffusers_prediction_type(Prediction prediction) {
  switch (prediction) {
    case Prediction::x0: return "sample";
    case Prediction::v: return "v_prediction";
    case Prediction::eps: break;
  }
  return "epsilon";
}

}  // namespace

json diffusers_unet_config(const Config& config) {
  const ModelConfig& model = config.model;
  const DataConfig& data = config.data;
  const int levels = num_levels(model);
  std::vector<int> widths;
  std::vector<bool> attention;
  for (int level = 0; level < levels; ++level) {
    widths.push_back(model.base_channels * model.channel_mult[level]);
    const int size = std::min(data.height, data.width) >> level;
    const auto& resolutions = model.attention_resolutions;
    attention.push_back(std::find(resolutions.begin(), resolutions.end(), size) !=
                        resolutions.end());
  }
  json head_dim = nullptr;  // one head of the block's width
  if (model.attention_head_channels > 0) {
    head_dim = model.attention_head_channels;
  } else if (model.attention_heads > 1) {
    std::set<int> head_widths = {widths.back() / model.attention_heads};
    for (int level = 0; level < levels; ++level) {
      if (attention[level]) head_widths.insert(widths[level] / model.attention_heads);
    }
    if (head_widths.size() != 1) {
      throw config_error("model.attention_heads",
                         "diffusers' UNet2DModel has one head width for every attention block, "
                         "but " + std::to_string(model.attention_heads) +
                             " heads over these attention widths give head widths " +
                             json(std::vector<int>(head_widths.begin(), head_widths.end())).dump() +
                             "; such a model cannot be exported");
    }
    head_dim = *head_widths.begin();
  }
  json down = json::array(), up = json::array();
  for (int level = 0; level < levels; ++level) {
    down.push_back(attention[level] ? "AttnDownBlock2D" : "DownBlock2D");
    up.push_back(attention[levels - 1 - level] ? "AttnUpBlock2D" : "UpBlock2D");
  }
  json unet_config = {{"_class_name", "UNet2DModel"},
          {"_diffusers_version", kDiffusersVersion},
          {"_ddpm_version", DDPM_VERSION},
          {"act_fn", "silu"},
          {"add_attention", true},
          {"attention_head_dim", head_dim},
          {"attn_norm_num_groups", nullptr},
          {"block_out_channels", widths},
          {"center_input_sample", false},
          {"class_embed_type", nullptr},
          {"down_block_types", down},
          {"downsample_padding", model.downsample_padding == DownsamplePadding::symmetric ? 1 : 0},
          {"downsample_type", "conv"},
          {"dropout", model.dropout},
          {"flip_sin_to_cos", model.time_embedding_order == TimeEmbeddingOrder::cos_sin},
          {"freq_shift", number_json(model.time_embedding_shift)},
          {"in_channels", data.channels},
          {"layers_per_block", model.num_res_blocks},
          {"mid_block_scale_factor", 1},
          {"mid_block_type", "UNetMidBlock2D"},
          {"norm_eps", model.norm_eps},
          {"norm_num_groups", model.norm_groups},
          {"num_class_embeds", model.num_classes > 0 ? json(model.num_classes + 1) : json()},
          {"num_train_timesteps", nullptr},
          {"out_channels", model.learn_variance ? 2 * data.channels : data.channels},
          {"resnet_time_scale_shift", "default"},
          {"sample_size", data.height == data.width ? json(data.height)
                                                    : json::array({data.height, data.width})},
          {"time_embedding_dim", nullptr},
          {"time_embedding_type", "positional"},
          {"up_block_types", up},
          {"upsample_type", "conv"}};
  if (!data.classes.empty()) unet_config["_ddpm_class_names"] = data.classes;
  return unet_config;
}

namespace {

// A distilled student (distillation.h) samples with DDIM on its trailing grid: DDIMScheduler,
// alpha_bar 1 after the last step, and its number of steps in _ddpm_sample_steps (diffusers'
// pipelines take the number at call time: num_inference_steps).
void distilled_scheduler(json& scheduler, const Config& config,
                         std::vector<std::string>& warnings) {
  const int steps = config.sample.steps;
  scheduler["_class_name"] = "DDIMScheduler";
  scheduler.erase("variance_type");
  scheduler["set_alpha_to_one"] = true;
  scheduler["_ddpm_sample_steps"] = steps;
  if (config.diffusion.timesteps % steps != 0) {
    warnings.push_back(
        "diffusers' DDIMScheduler steps from t to t - T // num_inference_steps, which is the "
        "trailing grid's next timestep only when the steps divide T (" +
        std::to_string(config.diffusion.timesteps) + "); this " + std::to_string(steps) +
        "-step student samples as distilled with ddpm, not exactly with diffusers");
  }
}

}  // namespace

json diffusers_scheduler_config(const Config& config, std::vector<std::string>& warnings) {
  const DiffusionConfig& diffusion = config.diffusion;
  const SampleConfig& sample = config.sample;
  std::string schedule = "linear";
  json trained = nullptr;
  if (diffusion.schedule == Schedule::linear || diffusion.schedule == Schedule::sigmoid) {
    schedule = choice_name(diffusion.schedule);
  } else if (diffusion.schedule == Schedule::quadratic) {
    schedule = "scaled_linear";
  } else if (diffusion.schedule == Schedule::cosine && same_number(diffusion.cosine_s, 0.008) &&
             same_number(diffusion.max_beta, 0.999)) {
    schedule = "squaredcos_cap_v2";
  } else {
    trained = make_betas(diffusion);  // the betas themselves
  }
  std::string spacing = choice_name(sample.spacing);
  if (sample.spacing == Spacing::uniform) {
    spacing = "linspace";  // the same but where a timestep falls on a half (sampler.h)
  } else if (sample.spacing == Spacing::quadratic) {
    warnings.push_back("sample.spacing quadratic has no diffusers counterpart; the scheduler "
                       "config says leading, diffusers' default");
    spacing = "leading";
  }
  json scheduler = {{"_class_name", "DDPMScheduler"},
          {"_diffusers_version", kDiffusersVersion},
          {"_ddpm_version", DDPM_VERSION},
          {"num_train_timesteps", diffusion.timesteps},
          {"beta_start", diffusion.beta_start},
          {"beta_end", diffusion.beta_end},
          {"beta_schedule", schedule},
          {"trained_betas", trained},
          {"variance_type", sample.variance == Variance::learned ? std::string("learned_range")
                                                                 : choice_name(sample.variance)},
          {"clip_sample", sample.clip_denoised},
          {"clip_sample_range", 1.0},
          {"prediction_type", diffusers_prediction_type(diffusion.prediction)},
          {"thresholding", false},
          {"timestep_spacing", spacing},
          {"steps_offset", 0},
          {"rescale_betas_zero_snr", false}};
  if (config.distill.start_steps > 0) distilled_scheduler(scheduler, config, warnings);
  return scheduler;
}

json diffusers_pipeline_index(const Config& config) {
  const bool distilled = config.distill.start_steps > 0;
  return {{"_class_name", distilled ? "DDIMPipeline" : "DDPMPipeline"},
          {"_diffusers_version", kDiffusersVersion},
          {"scheduler", {"diffusers", distilled ? "DDIMScheduler" : "DDPMScheduler"}},
          {"unet", {"diffusers", "UNet2DModel"}}};
}

}  // namespace ddpm
