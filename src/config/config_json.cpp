// Strict JSON reading and complete JSON writing of Config, plus --set overrides.
#include "config/config_json.h"

#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>

#include "base/suggest.h"
#include "config/json_object_reader.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

using nlohmann::json;

void read_data(const json& object, DataConfig& data) {
  ObjectReader reader(object, "data");
  reader.read("path", data.path);
  reader.read_image_size("image_size", data.height, data.width);
  reader.read("channels", data.channels);
  reader.read("random_flip", data.random_flip);
  reader.read("workers", data.workers);
  reader.read("cache_mb", data.cache_mb);
  reader.read("max_files", data.max_files);
  reader.read("max_image_pixels", data.max_image_pixels);
  reader.read("labels", data.labels);
  reader.read("classes", data.classes);
  reader.finish();
}

void read_model(const json& object, ModelConfig& model) {
  ObjectReader reader(object, "model");
  reader.read("base_channels", model.base_channels);
  reader.read("channel_mult", model.channel_mult);
  reader.read("num_res_blocks", model.num_res_blocks);
  reader.read("attention_resolutions", model.attention_resolutions);
  reader.read("attention_heads", model.attention_heads);
  reader.read("attention_head_channels", model.attention_head_channels);
  reader.read("dropout", model.dropout);
  reader.read("norm_groups", model.norm_groups);
  reader.read("norm_eps", model.norm_eps);
  reader.read("time_embedding_order", model.time_embedding_order);
  reader.read("time_embedding_shift", model.time_embedding_shift);
  reader.read("downsample_padding", model.downsample_padding);
  reader.read("num_classes", model.num_classes);
  reader.finish();
}

void read_diffusion(const json& object, DiffusionConfig& diffusion) {
  ObjectReader reader(object, "diffusion");
  reader.read("timesteps", diffusion.timesteps);
  reader.read("schedule", diffusion.schedule);
  reader.read("beta_start", diffusion.beta_start);
  reader.read("beta_end", diffusion.beta_end);
  reader.read("cosine_s", diffusion.cosine_s);
  reader.read("max_beta", diffusion.max_beta);
  reader.read("betas", diffusion.betas);
  reader.read("prediction", diffusion.prediction);
  reader.finish();
}

void read_train(const json& object, TrainConfig& train) {
  ObjectReader reader(object, "train");
  reader.read("batch_size", train.batch_size);
  reader.read("steps", train.steps);
  reader.read("lr", train.lr);
  reader.read("adam_beta1", train.adam_beta1);
  reader.read("adam_beta2", train.adam_beta2);
  reader.read("adam_eps", train.adam_eps);
  reader.read("weight_decay", train.weight_decay);
  reader.read("warmup_steps", train.warmup_steps);
  reader.read("grad_clip", train.grad_clip);
  reader.read("ema_decay", train.ema_decay);
  reader.read("ema_warmup", train.ema_warmup);
  reader.read("ema_power", train.ema_power);
  reader.read("loss_weighting", train.loss_weighting);
  reader.read("min_snr_gamma", train.min_snr_gamma);
  reader.read("grad_accumulation", train.grad_accumulation);
  reader.read("seed", train.seed);
  reader.read("log_every", train.log_every);
  reader.read("checkpoint_every", train.checkpoint_every);
  reader.read("sample_every", train.sample_every);
  reader.read("keep_checkpoints", train.keep_checkpoints);
  reader.read("device", train.device);
  reader.read("precision", train.precision);
  reader.read("loss_scale_init", train.loss_scale_init);
  reader.read("loss_scale_growth", train.loss_scale_growth);
  reader.read("loss_scale_backoff", train.loss_scale_backoff);
  reader.read("loss_scale_interval", train.loss_scale_interval);
  reader.read("loss_scale_min", train.loss_scale_min);
  reader.read("on_nonfinite", train.on_nonfinite);
  reader.read("dist_timeout_s", train.dist_timeout_s);
  reader.read("eval_every", train.eval_every);
  reader.read("eval_samples", train.eval_samples);
  reader.read("eval_real", train.eval_real);
  reader.read("eval_feature_net", train.eval_feature_net);
  reader.read("class_dropout", train.class_dropout);
  reader.finish();
}

void read_sample(const json& object, SampleConfig& sample) {
  ObjectReader reader(object, "sample");
  reader.read("sampler", sample.sampler);
  reader.read("steps", sample.steps);
  reader.read("eta", sample.eta);
  reader.read("variance", sample.variance);
  reader.read("spacing", sample.spacing);
  reader.read("clip_denoised", sample.clip_denoised);
  reader.read("num_images", sample.num_images);
  reader.read("batch_size", sample.batch_size);
  reader.read("seed", sample.seed);
  reader.read("guidance", sample.guidance);
  reader.read("precision", sample.precision);
  reader.finish();
}

const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = {"data", "model", "diffusion", "train", "sample"};
  return names;
}

// `size`: "20000000 bytes, " when known.
Error config_too_large(const std::filesystem::path& file, const std::string& size) {
  return Error(ErrorKind::config,
               "config file '" + file.string() + "' is " + size + "more than the limit of " +
                   std::to_string(kMaxConfigBytes) +
                   " bytes for a config (kMaxConfigBytes in ddpm/config_json.h); a config is a "
                   "few KB: check that this is the config file");
}

// The whole file, refused before it is read when it is longer than a config can be; pipes,
// whose size is unknown, are read up to the limit.
std::string read_config_text(const std::filesystem::path& file) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(file, error);
  if (!error && size > kMaxConfigBytes) {
    throw config_too_large(file, std::to_string(size) + " bytes, ");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::config, "config file '" + file.string() + "' cannot be read");
  }
  std::string text;
  char chunk[1 << 16];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) throw config_too_large(file, "");
  }
  return text;
}

json parse_file(const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::exists(file, error)) {
    throw Error(ErrorKind::config, "config file '" + file.string() +
                                       "' does not exist; pass an existing JSON file, e.g. "
                                       "configs/tiny.json");
  }
  if (std::filesystem::is_directory(file, error)) {
    throw Error(ErrorKind::config, "config file '" + file.string() + "' is a folder, not a file");
  }
  const std::string text = read_config_text(file);
  try {
    return json::parse(text, nullptr, true, /*ignore_comments=*/false);
  } catch (const json::exception& parse_error) {  // also out_of_range: a number like 1e400
    throw Error(ErrorKind::config,
                "config file '" + file.string() + "' is not valid JSON: " + parse_error.what());
  }
}

}  // namespace

Config config_from_json(const json& root) {
  if (!root.is_object()) {
    throw Error(ErrorKind::config, "a config must be a JSON object with the sections data, "
                                   "model, diffusion, train and sample; got " +
                                       json_type_name(root));
  }
  for (const auto& item : root.items()) {
    const auto& names = section_names();
    if (std::find(names.begin(), names.end(), item.key()) == names.end()) {
      throw config_error(item.key(), "unknown section; " + suggestion_text(item.key(), names));
    }
  }
  Config config;
  const json empty = json::object();
  const auto section = [&](const char* name) -> const json& {
    return root.contains(name) ? root.at(name) : empty;
  };
  read_data(section("data"), config.data);
  read_model(section("model"), config.model);
  read_diffusion(section("diffusion"), config.diffusion);
  read_train(section("train"), config.train);
  read_sample(section("sample"), config.sample);
  validate(config);
  return config;
}

json config_to_json(const Config& config) {
  json root;
  const DataConfig& data = config.data;
  root["data"] = {{"path", data.path},
                  {"image_size", data.height == data.width
                                     ? json(data.height)
                                     : json::array({data.height, data.width})},
                  {"channels", data.channels},
                  {"random_flip", data.random_flip},
                  {"workers", data.workers},
                  {"cache_mb", data.cache_mb},
                  {"max_files", data.max_files},
                  {"max_image_pixels", data.max_image_pixels},
                  {"labels", data.labels},
                  {"classes", data.classes}};
  const ModelConfig& model = config.model;
  root["model"] = {{"base_channels", model.base_channels},
                   {"channel_mult", model.channel_mult},
                   {"num_res_blocks", model.num_res_blocks},
                   {"attention_resolutions", model.attention_resolutions},
                   {"attention_heads", model.attention_heads},
                   {"attention_head_channels", model.attention_head_channels},
                   {"dropout", model.dropout},
                   {"norm_groups", model.norm_groups},
                   {"norm_eps", model.norm_eps},
                   {"time_embedding_order", model.time_embedding_order},
                   {"time_embedding_shift", model.time_embedding_shift},
                   {"downsample_padding", model.downsample_padding},
                   {"num_classes", model.num_classes}};
  const DiffusionConfig& diffusion = config.diffusion;
  root["diffusion"] = {{"timesteps", diffusion.timesteps},   {"schedule", diffusion.schedule},
                       {"beta_start", diffusion.beta_start}, {"beta_end", diffusion.beta_end},
                       {"cosine_s", diffusion.cosine_s},     {"max_beta", diffusion.max_beta},
                       {"betas", diffusion.betas},           {"prediction", diffusion.prediction}};
  const TrainConfig& train = config.train;
  root["train"] = {{"batch_size", train.batch_size},
                   {"steps", train.steps},
                   {"lr", train.lr},
                   {"adam_beta1", train.adam_beta1},
                   {"adam_beta2", train.adam_beta2},
                   {"adam_eps", train.adam_eps},
                   {"weight_decay", train.weight_decay},
                   {"warmup_steps", train.warmup_steps},
                   {"grad_clip", train.grad_clip},
                   {"ema_decay", train.ema_decay},
                   {"ema_warmup", train.ema_warmup},
                   {"ema_power", train.ema_power},
                   {"loss_weighting", train.loss_weighting},
                   {"min_snr_gamma", train.min_snr_gamma},
                   {"grad_accumulation", train.grad_accumulation},
                   {"seed", train.seed},
                   {"log_every", train.log_every},
                   {"checkpoint_every", train.checkpoint_every},
                   {"sample_every", train.sample_every},
                   {"keep_checkpoints", train.keep_checkpoints},
                   {"device", train.device},
                   {"precision", train.precision},
                   {"loss_scale_init", train.loss_scale_init},
                   {"loss_scale_growth", train.loss_scale_growth},
                   {"loss_scale_backoff", train.loss_scale_backoff},
                   {"loss_scale_interval", train.loss_scale_interval},
                   {"loss_scale_min", train.loss_scale_min},
                   {"on_nonfinite", train.on_nonfinite},
                   {"dist_timeout_s", train.dist_timeout_s},
                   {"eval_every", train.eval_every},
                   {"eval_samples", train.eval_samples},
                   {"eval_real", train.eval_real},
                   {"eval_feature_net", train.eval_feature_net},
                   {"class_dropout", train.class_dropout}};
  const SampleConfig& sample = config.sample;
  root["sample"] = {{"sampler", sample.sampler},
                    {"steps", sample.steps},
                    {"eta", sample.eta},
                    {"variance", sample.variance},
                    {"spacing", sample.spacing},
                    {"clip_denoised", sample.clip_denoised},
                    {"num_images", sample.num_images},
                    {"batch_size", sample.batch_size},
                    {"seed", sample.seed},
                    {"guidance", sample.guidance},
                    {"precision", sample.precision}};
  return root;
}

void apply_override(json& root, const std::string& assignment) {
  const auto equals = assignment.find('=');
  const std::string key_path = assignment.substr(0, equals);
  const auto dot = key_path.find('.');
  if (equals == std::string::npos || dot == std::string::npos || dot == 0 ||
      dot + 1 == key_path.size() || key_path.find('.', dot + 1) != std::string::npos) {
    throw Error(ErrorKind::usage, "--set '" + assignment +
                                      "': expected section.key=value, e.g. --set train.lr=1e-4");
  }
  const std::string section = key_path.substr(0, dot);
  const std::string key = key_path.substr(dot + 1);
  const std::string text = assignment.substr(equals + 1);
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    value = text;  // bare words such as cosine or /data/images
    try {
      value.dump();  // the config is written out as JSON, which holds UTF-8 text only
    } catch (const json::type_error&) {
      throw Error(ErrorKind::usage, "--set '" + key_path +
                                        "=...': the value is not valid UTF-8 text; check its "
                                        "quoting and the terminal's encoding");
    }
  }
  if (!root.is_object()) root = json::object();
  json& target = root[section];
  if (target.is_null()) target = json::object();
  if (!target.is_object()) {
    throw config_error(section, "expected an object, got " + json_type_name(target));
  }
  target[key] = std::move(value);
}

Config load_config(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  json root = parse_file(file);
  // Paths written in the file are relative to it (those of --set to the current folder).
  const auto resolve = [&](const char* section, const char* key) {
    if (!root.is_object() || !root.contains(section) || !root[section].is_object() ||
        !root[section].contains(key) || !root[section][key].is_string()) {
      return;
    }
    const std::filesystem::path path = root[section][key].get<std::string>();
    if (!path.empty() && path.is_relative()) {
      const auto folder = std::filesystem::absolute(file).parent_path();
      root[section][key] = (folder / path).lexically_normal().string();
    }
  };
  resolve("data", "path");
  resolve("train", "eval_real");
  resolve("train", "eval_feature_net");
  for (const auto& assignment : overrides) apply_override(root, assignment);
  try {
    return config_from_json(root);
  } catch (const Error& error) {
    throw Error(error.kind(), file.string() + ": " + error.what());
  }
}

Config default_config(const std::vector<std::string>& overrides) {
  json root = json::object();
  for (const auto& assignment : overrides) apply_override(root, assignment);
  return config_from_json(root);
}

std::string config_defaults_text() {
  std::ostringstream out;
  const json defaults = config_to_json(Config{});
  for (const auto& section : defaults.items()) {
    for (const auto& item : section.value().items()) {
      out << "  " << section.key() << "." << item.key() << " = " << item.value().dump() << "\n";
    }
  }
  return out.str();
}

}  // namespace ddpm
