// Reading and writing diffusers model folders; see diffusers_folder.h.
#include "interop/diffusers_folder.h"

#include <optional>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "ddpm/error.h"
#include "formats/diffusers_json.h"
#include "formats/safetensors.h"
#include "formats/weights.h"
#include "interop/diffusers_config.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kWeightsStem = "diffusion_pytorch_model";

Error folder_error(const fs::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "'" + path.string() + "': " + reason);
}

bool is_file(const fs::path& path) {
  std::error_code error;
  return fs::is_regular_file(path, error);
}

WeightMap float_tensors(const c10::IValue& value, const fs::path& file) {
  if (!value.isGenericDict()) {
    throw folder_error(file, "does not hold a dict of tensors (a state dict)");
  }
  WeightMap tensors;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) {
      throw folder_error(file, "holds an entry that is not name -> tensor");
    }
    const torch::Tensor& tensor = entry.value().toTensor();
    if (!tensor.is_floating_point()) {
      throw folder_error(file, "tensor '" + entry.key().toStringRef() + "' is not floating point");
    }
    tensors[entry.key().toStringRef()] = tensor.to(torch::kFloat32);
  }
  return tensors;
}

WeightMap read_weight_file(const fs::path& file) {
  if (file.extension() == ".safetensors") return read_safetensors(file).tensors;
  return float_tensors(read_pickle_file(file, "weights file '" + file.string() + "'"), file);
}

// A shard index's {"weight_map": {name: shard file}}: reads each shard once, and checks that the
// shards hold exactly the names the index gives them.
WeightMap read_sharded(const fs::path& index_file, std::vector<fs::path>& files) {
  const json index = read_diffusers_json(index_file);
  const json* map = index.is_object() && index.contains("weight_map") ? &index["weight_map"]
                                                                       : nullptr;
  if (!map || !map->is_object() || map->empty()) {
    throw folder_error(index_file, "has no weight_map {tensor name: shard file}");
  }
  std::map<std::string, std::set<std::string>> names_by_shard;
  for (const auto& item : map->items()) {
    if (!item.value().is_string()) {
      throw folder_error(index_file,
                         "maps '" + item.key() + "' to something that is not a file name");
    }
    const std::string shard = item.value().get<std::string>();
    // A file from the internet must not reach outside its folder.
    if (shard.empty() || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos || shard == "." || shard == "..") {
      throw folder_error(index_file, "names the shard '" + shard +
                                         "', which is not a file name in the same folder");
    }
    names_by_shard[shard].insert(item.key());
  }
  WeightMap weights;
  for (const auto& [shard, names] : names_by_shard) {
    const fs::path file = index_file.parent_path() / shard;
    if (!is_file(file)) {
      throw folder_error(index_file, "names the shard '" + shard +
                                         "', which is missing; download every shard");
    }
    const WeightMap tensors = read_weight_file(file);
    files.push_back(file);
    for (const auto& [name, tensor] : tensors) {
      if (!names.count(name)) {
        throw folder_error(file, "holds tensor '" + name + "', which " +
                                     index_file.filename().string() + " does not give to it");
      }
      weights[name] = tensor;
    }
    for (const std::string& name : names) {
      if (!tensors.count(name)) {
        throw folder_error(file, "lacks tensor '" + name + "', which " +
                                     index_file.filename().string() + " says it holds");
      }
    }
  }
  return weights;
}

// diffusion_pytorch_model.<variant>.safetensors or .bin, when it is the only weights file.
std::optional<fs::path> single_variant(const fs::path& unet_dir) {
  std::vector<fs::path> variants;
  std::error_code error;
  for (fs::directory_iterator it(unet_dir, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    const bool weights = name.ends_with(".safetensors") || name.ends_with(".bin");
    if (name.starts_with(std::string(kWeightsStem) + ".") && weights && is_file(it->path())) {
      variants.push_back(it->path());
    }
  }
  if (variants.size() > 1) {
    std::string names;
    for (const auto& file : variants) {
      names += (names.empty() ? "" : ", ") + file.filename().string();
    }
    throw folder_error(unet_dir, "has no " + std::string(kWeightsStem) +
                                     ".safetensors but several variants (" + names +
                                     "); keep the one to use as " + kWeightsStem + ".safetensors");
  }
  if (variants.empty()) return std::nullopt;
  return variants.front();
}

fs::path scheduler_config_file(const fs::path& folder, DiffusersLayout layout) {
  if (layout == DiffusersLayout::pipeline) return folder / "scheduler" / "scheduler_config.json";
  if (is_file(folder / "scheduler_config.json")) return folder / "scheduler_config.json";
  // The unet/ folder of a pipeline, given on its own.
  return folder.parent_path() / "scheduler" / "scheduler_config.json";
}

void check_writable_target(const fs::path& folder, bool overwrite) {
  std::error_code error;
  if (fs::exists(folder, error) && !fs::is_directory(folder, error)) {
    throw Error(ErrorKind::usage, "'" + folder.string() + "' exists and is not a folder; choose "
                                  "another --out");
  }
  if (!overwrite && fs::is_directory(folder, error) && !fs::is_empty(folder, error)) {
    throw Error(ErrorKind::usage,
                "'" + folder.string() + "' exists and is not empty; pass --overwrite to replace "
                "its model_index.json, unet/ and scheduler/ files, or choose another --out");
  }
}

void write_json(const fs::path& file, const json& value) {
  write_file_atomically(file, value.dump(2) + "\n");
}

}  // namespace

WeightMap rename_legacy_attention_keys(WeightMap weights, const std::string& source) {
  static const std::regex legacy(
      R"((.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias))");
  static const std::map<std::string, std::string> renames = {
      {"query", "to_q"}, {"key", "to_k"}, {"value", "to_v"}, {"proj_attn", "to_out.0"}};
  WeightMap renamed;
  for (auto& [name, tensor] : weights) {
    std::smatch match;
    std::string target = name;
    if (std::regex_match(name, match, legacy)) {
      target = match[1].str() + "." + renames.at(match[2].str()) + "." + match[3].str();
    }
    if (renamed.count(target) || (target != name && weights.count(target))) {
      throw Error(ErrorKind::runtime, source + ": holds both '" + name + "' and '" + target +
                                          "' (legacy and current names of one tensor)");
    }
    renamed[target] = std::move(tensor);
  }
  return renamed;
}

WeightMap read_diffusers_weights(const fs::path& unet_dir, std::vector<fs::path>& files) {
  const std::string stem = kWeightsStem;
  const fs::path single = unet_dir / (stem + ".safetensors");
  const fs::path single_index = unet_dir / (stem + ".safetensors.index.json");
  const fs::path bin = unet_dir / (stem + ".bin");
  const fs::path bin_index = unet_dir / (stem + ".bin.index.json");
  WeightMap weights;
  if (is_file(single)) {
    weights = read_weight_file(single);
    files.push_back(single);
  } else if (is_file(single_index)) {
    weights = read_sharded(single_index, files);
  } else if (is_file(bin)) {
    weights = read_weight_file(bin);
    files.push_back(bin);
  } else if (is_file(bin_index)) {
    weights = read_sharded(bin_index, files);
  } else if (const auto variant = single_variant(unet_dir)) {
    weights = read_weight_file(*variant);
    files.push_back(*variant);
  } else {
    throw folder_error(unet_dir, "holds no weights: expected " + stem + ".safetensors, " + stem +
                                     ".safetensors.index.json (sharded), " + stem + ".bin or " +
                                     stem + ".bin.index.json; download them with the config");
  }
  return rename_legacy_attention_keys(std::move(weights), "weights in '" + unet_dir.string() + "'");
}

DiffusersModel read_diffusers_folder(const fs::path& folder) {
  DiffusersModel model;
  model.layout = is_file(folder / "unet" / "config.json") ? DiffusersLayout::pipeline
                                                          : DiffusersLayout::flat;
  model.unet_dir = model.layout == DiffusersLayout::pipeline ? folder / "unet" : folder;
  const fs::path unet_config = model.unet_dir / "config.json";
  if (!is_file(unet_config)) {
    throw folder_error(folder, "is not a diffusers model folder: it has neither config.json (flat "
                               "layout) nor unet/config.json (pipeline layout)");
  }
  const json unet = read_diffusers_json(unet_config);
  const fs::path scheduler_file = scheduler_config_file(folder, model.layout);
  std::optional<json> scheduler;
  if (is_file(scheduler_file)) scheduler = read_diffusers_json(scheduler_file);
  model.config = config_from_diffusers(unet, scheduler ? &*scheduler : nullptr, folder.string(),
                                       model.warnings);
  model.weights = read_diffusers_weights(model.unet_dir, model.weight_files);
  return model;
}

void write_diffusers_pipeline(const fs::path& folder, const Config& config,
                              const WeightMap& weights, bool overwrite,
                              std::vector<std::string>& warnings) {
  check_writable_target(folder, overwrite);
  // Everything that can be refused is refused before anything is written.
  const json unet_config = diffusers_unet_config(config);
  const json scheduler_config = diffusers_scheduler_config(config, warnings);
  std::error_code error;
  fs::create_directories(folder / "unet", error);
  if (!error) fs::create_directories(folder / "scheduler", error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot create '" + folder.string() + "': " + error.message());
  }
  write_safetensors(folder / "unet" / (std::string(kWeightsStem) + ".safetensors"), weights);
  write_json(folder / "unet" / "config.json", unet_config);
  write_json(folder / "scheduler" / "scheduler_config.json", scheduler_config);
  write_json(folder / "model_index.json", diffusers_pipeline_index(config));
}

}  // namespace ddpm
