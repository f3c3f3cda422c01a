// diffusers' UNet2DModel config to our data and model sections, and the whole of
// config_from_diffusers; see diffusers_config.h. (The scheduler half is
// diffusers_scheduler_config.cpp, the writing diffusers_config_write.cpp.)
#include "interop/diffusers_config.h"

#include <algorithm>
#include <set>
#include <vector>

#include "ddpm/error.h"
#include "interop/diffusers_fields.h"

namespace ddpm {
namespace {

using nlohmann::json;

// sample_size and the channels: the image the model was built for, and whether the network
// also predicts its variances (out_channels twice in_channels, improved DDPM's learned range).
void read_image_shape(DiffusersFields& fields, DataConfig& data, ModelConfig& model,
                      TrainConfig& train) {
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
  if (out_channels != in_channels && out_channels != 2 * in_channels) {
    fields.refuse("out_channels", out_channels,
                  "as many as in_channels (" + std::to_string(in_channels) +
                      "): the network predicts the noise of its input; or twice as many, for "
                      "a network that also predicts its variances");
  }
  data.channels = in_channels;
  model.learn_variance = out_channels == 2 * in_channels;
  if (model.learn_variance) train.loss = LossKind::hybrid;  // what trains such a model
}

// The fields that must have the one value our UNet implements.
void require_our_unet(DiffusersFields& fields) {
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
  const std::string activation = fields.text("act_fn", "silu");
  if (activation != "silu" && activation != "swish") {
    fields.refuse("act_fn", activation, "\"silu\" (swish) only");
  }
  fields.get("num_train_timesteps", nullptr);  // only a learned time embedding reads it
}

// A class-conditional model: num_class_embeds rows, of which ddpm takes the last as "no class"
// (as it trains them, for guidance); the class names, when ddpm exported it.
void read_classes(DiffusersFields& fields, const json& unet, Config& config,
                  std::vector<std::string>& warnings) {
  if (fields.get("num_class_embeds", nullptr).is_null()) return;
  ModelConfig& model = config.model;
  DataConfig& data = config.data;
  model.num_classes = fields.integer("num_class_embeds", 0, 2) - 1;
  data.labels = LabelSource::folders;  // what fine-tuning it needs
  if (unet.contains("_ddpm_class_names") && unet["_ddpm_class_names"].is_array()) {
    std::vector<std::string> names;
    for (const json& name : unet["_ddpm_class_names"]) {
      if (name.is_string()) names.push_back(name.get<std::string>());
    }
    if (names.size() == static_cast<size_t>(model.num_classes)) data.classes = names;
  }
  if (data.classes.empty()) {
    warnings.push_back(fields.file() + ": num_class_embeds " +
                       std::to_string(model.num_classes + 1) + ": classes 0 .. " +
                       std::to_string(model.num_classes - 1) +
                       " for --class, and the last embedding as \"no class\" for --guidance "
                       "(right for a model trained with class dropout into that row)");
  }
}

// The levels: block_out_channels as base_channels x channel_mult, the down and up block types
// as the attention resolutions. Returns the widths and the down block types.
std::pair<std::vector<int>, std::vector<std::string>> read_levels(DiffusersFields& fields,
                                                                  const DataConfig& data,
                                                                  ModelConfig& model) {
  const std::vector<int> widths =
      fields.integer_list("block_out_channels", json::array({224, 448, 672, 896}));
  const std::vector<std::string> down = fields.text_list(
      "down_block_types",
      json::array({"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"}));
  const std::vector<std::string> up = fields.text_list(
      "up_block_types", json::array({"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"}));
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
  return {widths, down};
}

// attention_head_dim: channels per head, or, when every attention block is as wide, the head
// count a model trained here would say.
void read_attention_heads(DiffusersFields& fields, const std::vector<int>& widths,
                          const std::vector<std::string>& down, ModelConfig& model) {
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
  if (model.attention_head_channels == 0) return;
  std::set<int> widths_with_attention = {widths.back()};  // the middle block's
  for (size_t level = 0; level < widths.size(); ++level) {
    if (down[level] == "AttnDownBlock2D") widths_with_attention.insert(widths[level]);
  }
  if (widths_with_attention.size() == 1 &&
      *widths_with_attention.begin() % model.attention_head_channels == 0) {
    model.attention_heads = *widths_with_attention.begin() / model.attention_head_channels;
    model.attention_head_channels = 0;
  }
}

// GroupNorm, dropout, the time embedding's layout and the downsampling padding.
void read_layer_details(DiffusersFields& fields, ModelConfig& model) {
  model.norm_groups = fields.integer("norm_num_groups", 32, 1);
  const json attention_groups = fields.get("attn_norm_num_groups", nullptr);
  if (!attention_groups.is_null() && attention_groups != json(model.norm_groups)) {
    fields.refuse("attn_norm_num_groups", attention_groups,
                  "null or norm_num_groups (" + std::to_string(model.norm_groups) + ")");
  }
  model.norm_eps = fields.number("norm_eps", 1e-5);
  model.dropout = fields.number("dropout", 0.0);
  model.time_embedding_order = fields.boolean("flip_sin_to_cos", true)
                                   ? TimeEmbeddingOrder::cos_sin
                                   : TimeEmbeddingOrder::sin_cos;
  model.time_embedding_shift = fields.number("freq_shift", 0.0);
  const json padding = fields.get("downsample_padding", 1);
  if (padding == json(0)) {
    model.downsample_padding = DownsamplePadding::asymmetric;
  } else if (padding == json(1)) {
    model.downsample_padding = DownsamplePadding::symmetric;
  } else {
    fields.refuse("downsample_padding", padding,
                  "0 (one row and column at the bottom and right, DDPM's) or 1 (one on every "
                  "side)");
  }
}

void read_unet(const json& unet, const std::string& file, Config& config,
               std::vector<std::string>& warnings) {
  if (!unet.is_object()) {
    throw Error(ErrorKind::config, file + ": is not a JSON object (a UNet2DModel config)");
  }
  DiffusersFields fields(unet, file);
  const json class_name = unet.value("_class_name", json("UNet2DModel"));
  if (class_name != "UNet2DModel") {
    fields.refuse("_class_name", class_name, "UNet2DModel, the unconditional DDPM network");
  }
  read_image_shape(fields, config.data, config.model, config.train);
  require_our_unet(fields);
  read_classes(fields, unet, config, warnings);
  const auto [widths, down] = read_levels(fields, config.data, config.model);
  config.model.num_res_blocks = fields.integer("layers_per_block", 2, 1);
  read_attention_heads(fields, widths, down, config.model);
  read_layer_details(fields, config.model);
  for (const std::string& key : fields.unread()) {
    warnings.push_back(file + ": field '" + key + "' is not one ddpm knows; it is ignored");
  }
}

}  // namespace

Config config_from_diffusers(const json& unet, const json* scheduler, const std::string& source,
                             std::vector<std::string>& warnings) {
  Config config;
  read_unet(unet, source + " (UNet config)", config, warnings);
  read_diffusers_scheduler(scheduler, source + " (scheduler config)", config, warnings);
  try {
    validate(config);  // as every config is
    return config;
  } catch (const Error& error) {
    throw Error(ErrorKind::config,
                source + ": its configs describe a model ddpm cannot build: " + error.what());
  }
}

}  // namespace ddpm
