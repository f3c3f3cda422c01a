// diffusers' UNet2DModel and scheduler configs to ours and back; see diffusers_config.h.
#include "interop/diffusers_config.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "config/config_json.h"
#include "ddpm/error.h"
#include "diffusion/schedule.h"

namespace ddpm {
namespace {

using nlohmann::json;

// One diffusers config object: fields with diffusers' defaults, the fields read remembered so
// that the others can be reported.
class Fields {
 public:
  Fields(const json& object, std::string file) : object_(object), file_(std::move(file)) {}

  // The field, or `fallback` (diffusers' default) when absent. null stays null.
  json get(const std::string& key, const json& fallback) {
    read_.insert(key);
    const auto found = object_.find(key);
    return found == object_.end() ? fallback : *found;
  }

  [[noreturn]] void refuse(const std::string& key, const json& value,
                           const std::string& supported) const {
    throw Error(ErrorKind::config, file_ + ": field '" + key + "' is " + value.dump() +
                                       "; ddpm supports " + supported);
  }

  // A field that must have one value for ddpm to run the model.
  void require(const std::string& key, const json& fallback, const json& supported,
               const std::string& what = "") {
    const json value = get(key, fallback);
    if (value != supported) refuse(key, value, what.empty() ? supported.dump() + " only" : what);
  }

  std::string text(const std::string& key, const std::string& fallback) {
    const json value = get(key, fallback);
    if (!value.is_string()) refuse(key, value, "text");
    return value.get<std::string>();
  }
  bool boolean(const std::string& key, bool fallback) {
    const json value = get(key, fallback);
    if (!value.is_boolean()) refuse(key, value, "true or false");
    return value.get<bool>();
  }
  double number(const std::string& key, double fallback) {
    const json value = get(key, fallback);
    if (!value.is_number()) refuse(key, value, "a number");
    return value.get<double>();
  }
  int integer(const std::string& key, int fallback, int minimum) {
    const json value = get(key, fallback);
    if (!value.is_number_integer() || value.get<int64_t>() < minimum ||
        value.get<int64_t>() > 1'000'000'000) {
      refuse(key, value, "an integer >= " + std::to_string(minimum));
    }
    return value.get<int>();
  }

  // Fields that are neither read nor private ("_class_name", ...).
  std::vector<std::string> unread() const {
    std::vector<std::string> keys;
    for (const auto& item : object_.items()) {
      if (!item.key().starts_with("_") && !read_.count(item.key())) keys.push_back(item.key());
    }
    return keys;
  }

  const std::string& file() const { return file_; }

 private:
  const json& object_;
  std::string file_;
  std::set<std::string> read_;
};

std::vector<int> integer_list(Fields& fields, const std::string& key, const json& fallback) {
  const json value = fields.get(key, fallback);
  std::vector<int> result;
  if (value.is_array()) {
    for (const json& element : value) {
      if (!element.is_number_integer() || element.get<int64_t>() < 1 ||
          element.get<int64_t>() > 1'000'000) {
        result.clear();
        break;
      }
      result.push_back(element.get<int>());
    }
  }
  if (result.empty()) fields.refuse(key, value, "a list of positive integers");
  return result;
}

std::vector<std::string> text_list(Fields& fields, const std::string& key, const json& fallback) {
  const json value = fields.get(key, fallback);
  std::vector<std::string> result;
  if (value.is_array()) {
    for (const json& element : value) {
      if (!element.is_string()) {
        result.clear();
        break;
      }
      result.push_back(element.get<std::string>());
    }
  }
  if (result.empty()) fields.refuse(key, value, "a list of block type names");
  return result;
}

void read_unet(const json& unet, const std::string& file, Config& config,
               std::vector<std::string>& warnings) {
  if (!unet.is_object()) {
    throw Error(ErrorKind::config, file + ": is not a JSON object (a UNet2DModel config)");
  }
  Fields fields(unet, file);
  const json class_name = unet.value("_class_name", json("UNet2DModel"));
  if (class_name != "UNet2DModel") {
    fields.refuse("_class_name", class_name, "UNet2DModel, the unconditional DDPM network");
  }
  DataConfig& data = config.data;
  ModelConfig& model = config.model;

  const json size = fields.get("sample_size", nullptr);
  if (size.is_number_integer() && size.get<int64_t>() > 0 && size.get<int64_t>() <= 1'000'000) {
    data.height = data.width = size.get<int>();
  } else if (size.is_array() && size.size() == 2 && size[0].is_number_integer() &&
             size[1].is_number_integer() && size[0].get<int64_t>() > 0 &&
             size[1].get<int64_t>() > 0 && size[0].get<int64_t>() <= 1'000'000 &&
             size[1].get<int64_t>() <= 1'000'000) {
    data.height = size[0].get<int>();
    data.width = size[1].get<int>();
  } else {
    fields.refuse("sample_size", size,
                  "a positive integer or [height, width]: ddpm builds the model for the image "
                  "size it was trained on; add it to the config");
  }
  const int in_channels = fields.integer("in_channels", 3, 1);
  const int out_channels = fields.integer("out_channels", 3, 1);
  if (in_channels != 1 && in_channels != 3 && in_channels != 4) {
    fields.refuse("in_channels", in_channels, "1 (grayscale), 3 (RGB) or 4 (RGBA)");
  }
  if (out_channels != in_channels) {
    fields.refuse("out_channels", out_channels,
                  "as many as in_channels (" + std::to_string(in_channels) +
                      "): the network predicts the noise of its input");
  }
  data.channels = in_channels;

  fields.require("center_input_sample", false, false);
  fields.require("time_embedding_type", "positional", "positional",
                 "\"positional\" (sinusoidal) only");
  fields.require("mid_block_type", "UNetMidBlock2D", "UNetMidBlock2D");
  fields.require("mid_block_scale_factor", 1, 1);
  fields.require("downsample_type", "conv", "conv");
  fields.require("upsample_type", "conv", "conv");
  fields.require("resnet_time_scale_shift", "default", "default",
                 "\"default\" (additive time conditioning) only");
  fields.require("add_attention", true, true);
  fields.require("class_embed_type", nullptr, nullptr,
                 "null (no class embedding, or the learned one of num_class_embeds) only");
  // A class-conditional model: num_class_embeds rows, of which ddpm takes the last as "no
  // class" (as it trains them, for guidance); the class names, when ddpm exported it.
  if (!fields.get("num_class_embeds", nullptr).is_null()) {
    model.num_classes = fields.integer("num_class_embeds", 0, 2) - 1;
    data.labels = "folders";  // what fine-tuning it needs
    if (unet.contains("_ddpm_class_names") && unet["_ddpm_class_names"].is_array()) {
      std::vector<std::string> names;
      for (const json& name : unet["_ddpm_class_names"]) {
        if (name.is_string()) names.push_back(name.get<std::string>());
      }
      if (names.size() == static_cast<size_t>(model.num_classes)) data.classes = names;
    }
    if (data.classes.empty()) {
      warnings.push_back(file + ": num_class_embeds " + std::to_string(model.num_classes + 1) +
                         ": classes 0 .. " + std::to_string(model.num_classes - 1) +
                         " for --class, and the last embedding as \"no class\" for --guidance "
                         "(right for a model trained with class dropout into that row)");
    }
  }
  const std::string activation = fields.text("act_fn", "silu");
  if (activation != "silu" && activation != "swish") {
    fields.refuse("act_fn", activation, "\"silu\" (swish) only");
  }
  fields.get("num_train_timesteps", nullptr);  // only a learned time embedding reads it

  const std::vector<int> widths =
      integer_list(fields, "block_out_channels", json::array({224, 448, 672, 896}));
  const std::vector<std::string> down = text_list(
      fields, "down_block_types",
      json::array({"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"}));
  const std::vector<std::string> up = text_list(
      fields, "up_block_types",
      json::array({"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"}));
  if (down.size() != widths.size() || up.size() != widths.size()) {
    fields.refuse("down_block_types", json(down),
                  "one down and one up block per entry of block_out_channels (" +
                      std::to_string(widths.size()) + "), got " + std::to_string(down.size()) +
                      " and " + std::to_string(up.size()));
  }
  const json embedding_width = fields.get("time_embedding_dim", nullptr);
  if (!embedding_width.is_null() && embedding_width != json(4 * widths[0])) {
    fields.refuse("time_embedding_dim", embedding_width,
                  "null or 4 x block_out_channels[0] (" + std::to_string(4 * widths[0]) + ")");
  }
  model.base_channels = widths[0];
  model.channel_mult.clear();
  for (const int width : widths) {
    if (width % widths[0] != 0) {
      fields.refuse("block_out_channels", json(widths),
                    "widths that are multiples of the first (ddpm's base_channels x "
                    "channel_mult)");
    }
    model.channel_mult.push_back(width / widths[0]);
  }
  model.attention_resolutions.clear();
  const size_t levels = widths.size();
  for (size_t level = 0; level < levels; ++level) {
    if (down[level] != "DownBlock2D" && down[level] != "AttnDownBlock2D") {
      fields.refuse("down_block_types", json(down),
                    "DownBlock2D and AttnDownBlock2D (block " + std::to_string(level) + " is " +
                        down[level] + ")");
    }
    const std::string& mirror = up[levels - 1 - level];
    if (mirror != "UpBlock2D" && mirror != "AttnUpBlock2D") {
      fields.refuse("up_block_types", json(up),
                    "UpBlock2D and AttnUpBlock2D (block " + std::to_string(levels - 1 - level) +
                        " is " + mirror + ")");
    }
    const bool attention = down[level] == "AttnDownBlock2D";
    if (attention != (mirror == "AttnUpBlock2D")) {
      fields.refuse("up_block_types", json(up),
                    "attention at the same levels on the way up as on the way down (" +
                        json(down).dump() + " mirrored)");
    }
    if (attention) {
      model.attention_resolutions.push_back(std::min(data.height, data.width) >> level);
    }
  }
  model.num_res_blocks = fields.integer("layers_per_block", 2, 1);

  const json head_dim = fields.get("attention_head_dim", 8);
  model.attention_heads = 1;
  model.attention_head_channels = 0;
  if (head_dim.is_number_integer() && head_dim.get<int64_t>() >= 1 &&
      head_dim.get<int64_t>() <= 1'000'000) {
    model.attention_head_channels = head_dim.get<int>();
  } else if (!head_dim.is_null()) {
    fields.refuse("attention_head_dim", head_dim,
                  "null (one head) or a positive integer (channels per head)");
  }
  if (model.attention_head_channels > 0) {
    // The same head count in every attention block (the middle one included) is written as
    // that count, as a model trained here would say it.
    std::set<int> widths_with_attention = {widths.back()};
    for (size_t level = 0; level < levels; ++level) {
      if (down[level] == "AttnDownBlock2D") widths_with_attention.insert(widths[level]);
    }
    if (widths_with_attention.size() == 1 &&
        *widths_with_attention.begin() % model.attention_head_channels == 0) {
      model.attention_heads = *widths_with_attention.begin() / model.attention_head_channels;
      model.attention_head_channels = 0;
    }
  }
  model.norm_groups = fields.integer("norm_num_groups", 32, 1);
  const json attention_groups = fields.get("attn_norm_num_groups", nullptr);
  if (!attention_groups.is_null() && attention_groups != json(model.norm_groups)) {
    fields.refuse("attn_norm_num_groups", attention_groups,
                  "null or norm_num_groups (" + std::to_string(model.norm_groups) + ")");
  }
  model.norm_eps = fields.number("norm_eps", 1e-5);
  model.dropout = fields.number("dropout", 0.0);
  model.time_embedding_order = fields.boolean("flip_sin_to_cos", true) ? "cos_sin" : "sin_cos";
  model.time_embedding_shift = fields.number("freq_shift", 0.0);
  const json padding = fields.get("downsample_padding", 1);
  if (padding == json(0)) {
    model.downsample_padding = "asymmetric";
  } else if (padding == json(1)) {
    model.downsample_padding = "symmetric";
  } else {
    fields.refuse("downsample_padding", padding,
                  "0 (one row and column at the bottom and right, DDPM's) or 1 (one on every "
                  "side)");
  }
  for (const std::string& key : fields.unread()) {
    warnings.push_back(file + ": field '" + key + "' is not one ddpm knows; it is ignored");
  }
}

// The sampler of the scheduler class, with the class's own defaults, so that a pipeline folder
// samples as its scheduler does: DDPM, DDIM, Euler, Euler ancestral, Heun and DPM-Solver
// multistep (dpmsolver++, sde-dpmsolver++) have counterparts; another class samples with ddpm.
void read_sampler(Fields& fields, const std::string& class_name, int64_t timesteps,
                  SampleConfig& sample, std::vector<std::string>& warnings) {
  const std::string& file = fields.file();
  const auto not_applied = [&](const std::string& key, const json& fallback, const char* what) {
    const json value = fields.get(key, fallback);
    if (value != fallback) {
      warnings.push_back(file + ": " + key + " " + value.dump() + " is not applied: " + what);
    }
  };
  const bool ddpm_family = class_name == "DDPMScheduler" || class_name == "DDIMScheduler";
  const bool sigma_family = class_name == "EulerDiscreteScheduler" ||
                            class_name == "EulerAncestralDiscreteScheduler" ||
                            class_name == "HeunDiscreteScheduler";
  const bool dpm = class_name == "DPMSolverMultistepScheduler";
  if (!ddpm_family && !sigma_family && !dpm) {
    warnings.push_back(file + ": " + class_name + " has no ddpm counterpart; sampling with ddpm "
                       "(DDPMScheduler's defaults); see ddpm sample --list-samplers");
  }
  // DDPM's sampling runs every timestep; the others take 50 steps (diffusers' pipelines ask for
  // a number of steps at call time: pass --steps).
  const bool every_timestep = !(sigma_family || dpm || class_name == "DDIMScheduler");
  sample.steps = every_timestep ? static_cast<int>(timesteps)
                                : static_cast<int>(std::clamp<int64_t>(timesteps - 1, 1, 50));
  if (class_name == "DDIMScheduler") {
    sample.sampler = "ddim";
  } else if (class_name == "EulerDiscreteScheduler") {
    sample.sampler = "euler";
  } else if (class_name == "EulerAncestralDiscreteScheduler") {
    sample.sampler = "euler_ancestral";
  } else if (class_name == "HeunDiscreteScheduler") {
    sample.sampler = "heun";
  } else if (dpm) {
    const std::string algorithm = fields.text("algorithm_type", "dpmsolver++");
    if (algorithm == "sde-dpmsolver++") {
      sample.sampler = "dpmpp_2m_sde";
    } else {
      sample.sampler = "dpmpp_2m";
      if (algorithm != "dpmsolver++") {
        warnings.push_back(file + ": algorithm_type '" + algorithm +
                           "' is not applied: ddpm runs DPM-Solver++ (dpmsolver++)");
      }
    }
    not_applied("solver_order", 2, "ddpm's DPM-Solver++ is second order (2M)");
    not_applied("solver_type", "midpoint", "ddpm's DPM-Solver++(2M) uses the midpoint form");
    not_applied("euler_at_final", false, "ddpm's last step is first order already");
    not_applied("use_lu_lambdas", false, "ddpm spaces by timesteps or Karras sigmas");
  } else {
    sample.sampler = "ddpm";
  }
  if (!(sigma_family || dpm)) {
    const json variance = fields.get("variance_type", "fixed_small");
    if (variance == "fixed_small" || variance == "fixed_small_log" || variance.is_null()) {
      sample.variance = "fixed_small";
    } else if (variance == "fixed_large" || variance == "fixed_large_log") {
      sample.variance = "fixed_large";
    } else {
      fields.refuse("variance_type", variance,
                    "fixed_small and fixed_large (a network that predicts its variance is not "
                    "supported)");
    }
  }
  // DDPM and DDIM clip by default; Heun only when asked; Euler and DPM-Solver never.
  if (class_name == "HeunDiscreteScheduler") {
    sample.clip_denoised = fields.boolean("clip_sample", false);
  } else {
    sample.clip_denoised = !(sigma_family || dpm) && fields.boolean("clip_sample", true);
  }
  const bool karras = fields.boolean("use_karras_sigmas", false);
  if (karras && !(sigma_family || dpm)) {
    warnings.push_back(file + ": use_karras_sigmas is not applied: " + class_name +
                       " steps between schedule timesteps");
  }
  const std::string spacing =
      fields.text("timestep_spacing", sigma_family || dpm ? "linspace" : "leading");
  if (karras && (sigma_family || dpm)) {
    sample.spacing = "karras";
  } else if (spacing == "leading" || spacing == "trailing" || spacing == "linspace") {
    sample.spacing = spacing;
  } else {
    warnings.push_back(file + ": timestep_spacing '" + spacing +
                       "' has no ddpm counterpart; sampling uses sample.spacing leading");
    sample.spacing = "leading";
  }
  not_applied("final_sigmas_type", "zero", "ddpm's chains end at sigma = 0");
  not_applied("interpolation_type", "linear", "ddpm interpolates sigma linearly in t");
  not_applied("use_exponential_sigmas", false, "ddpm spaces by timesteps or Karras sigmas");
  not_applied("use_beta_sigmas", false, "ddpm spaces by timesteps or Karras sigmas");
  not_applied("clip_sample_range", 1.0, "ddpm clips the predicted x0 to [-1, 1]");
  not_applied("thresholding", false, "ddpm clips instead of thresholding dynamically");
  not_applied("steps_offset", 0, "ddpm's leading spacing starts at timestep 0");
  not_applied("set_alpha_to_one", true, "ddpm's DDIM ends at alpha_bar = 1");
}

void read_scheduler(const json* scheduler, const std::string& file, Config& config,
                    std::vector<std::string>& warnings) {
  const json none = json::object();
  if (scheduler && !scheduler->is_object()) {
    throw Error(ErrorKind::config, file + ": is not a JSON object (a scheduler config)");
  }
  if (!scheduler) {
    warnings.push_back("no scheduler config: using DDPMScheduler's defaults (linear betas 1e-4 to "
                       "0.02 over 1000 steps, fixed_small variance, clipped x0)");
  }
  Fields fields(scheduler ? *scheduler : none, file);
  DiffusionConfig& diffusion = config.diffusion;
  SampleConfig& sample = config.sample;
  diffusion.timesteps = fields.integer("num_train_timesteps", 1000, 1);
  diffusion.beta_start = fields.number("beta_start", 0.0001);
  diffusion.beta_end = fields.number("beta_end", 0.02);
  const std::string schedule = fields.text("beta_schedule", "linear");
  const json trained = fields.get("trained_betas", nullptr);
  if (!trained.is_null()) {
    if (!trained.is_array()) fields.refuse("trained_betas", trained, "null or a list of numbers");
    diffusion.schedule = "custom";
    for (const json& beta : trained) {
      if (!beta.is_number()) fields.refuse("trained_betas", beta, "a list of numbers");
      diffusion.betas.push_back(beta.get<double>());
    }
    if (diffusion.betas.size() != static_cast<size_t>(diffusion.timesteps)) {
      fields.refuse("trained_betas", json(diffusion.betas.size()),
                    "one beta per timestep (num_train_timesteps = " +
                        std::to_string(diffusion.timesteps) + ")");
    }
  } else if (schedule == "linear" || schedule == "sigmoid") {
    diffusion.schedule = schedule;
  } else if (schedule == "scaled_linear") {
    diffusion.schedule = "quadratic";  // linear in sqrt(beta), as DDPM's "quad"
  } else if (schedule == "squaredcos_cap_v2") {
    diffusion.schedule = "cosine";
    diffusion.cosine_s = 0.008;
    diffusion.max_beta = 0.999;
  } else {
    fields.refuse("beta_schedule", schedule,
                  "linear, scaled_linear, squaredcos_cap_v2, sigmoid, or trained_betas");
  }
  const std::string prediction = fields.text("prediction_type", "epsilon");
  if (prediction == "epsilon") {
    diffusion.prediction = "eps";
  } else if (prediction == "sample") {
    diffusion.prediction = "x0";
  } else if (prediction == "v_prediction") {
    diffusion.prediction = "v";
  } else {
    fields.refuse("prediction_type", prediction, "epsilon, sample or v_prediction");
  }
  fields.require("rescale_betas_zero_snr", false, false);
  std::string class_name = "DDPMScheduler";
  if (scheduler && scheduler->contains("_class_name") && (*scheduler)["_class_name"].is_string()) {
    class_name = (*scheduler)["_class_name"].get<std::string>();
  }
  read_sampler(fields, class_name, diffusion.timesteps, sample, warnings);
}

}  // namespace

Config config_from_diffusers(const json& unet, const json* scheduler, const std::string& source,
                             std::vector<std::string>& warnings) {
  Config config;
  read_unet(unet, source + " (UNet config)", config, warnings);
  read_scheduler(scheduler, source + " (scheduler config)", config, warnings);
  try {
    return config_from_json(config_to_json(config));  // validates, as every config is
  } catch (const Error& error) {
    throw Error(ErrorKind::config,
                source + ": its configs describe a model ddpm cannot build: " + error.what());
  }
}

}  // namespace ddpm
