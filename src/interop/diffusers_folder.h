// diffusers model folders, read and written by our own code.
//
// Two layouts hold a UNet2DModel: flat (config.json, scheduler_config.json and the weights at the
// root, as the google/ddpm-* repositories have them) and pipeline (model_index.json, unet/,
// scheduler/, as DDPMPipeline.save_pretrained writes). The weights are, in diffusers' order of
// preference, diffusion_pytorch_model.safetensors, .safetensors.index.json (sharded),
// .bin (a torch.save archive, read by LibTorch's own unpickler) or .bin.index.json; a single
// variant file (diffusion_pytorch_model.fp16.safetensors, ...) when none of those is there.
// Attention weights may carry today's names (to_q, to_k, to_v, to_out.0) or the legacy ones of
// diffusers' original-checkpoint converter (query, key, value, proj_attn).
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"

namespace ddpm {

using WeightMap = std::map<std::string, torch::Tensor>;

enum class DiffusersLayout { flat, pipeline };

struct DiffusersModel {
  DiffusersLayout layout = DiffusersLayout::flat;
  std::filesystem::path unet_dir;                // the folder of the UNet's config and weights
  std::vector<std::filesystem::path> weight_files;  // the files the weights came from
  Config config;                                 // from the UNet's and the scheduler's configs
  WeightMap weights;                             // float32, by our (diffusers' current) names
  std::vector<std::string> warnings;             // fields read but not applied (diffusers_config.h)
};

// Throws ddpm::Error naming the file for a missing or invalid config, a missing, corrupt or
// incomplete weights file, a shard index naming files outside the folder, a model we cannot run
// (diffusers_config.h). The weights are not yet checked against the model: load_state_dict does.
DiffusersModel read_diffusers_folder(const std::filesystem::path& folder);

// The UNet weights of `unet_dir` (see above), legacy names renamed; `files` gets the files read.
WeightMap read_diffusers_weights(const std::filesystem::path& unet_dir,
                                 std::vector<std::filesystem::path>& files);

// query, key, value and proj_attn of attention blocks renamed to_q, to_k, to_v and to_out.0, as
// diffusers does on load. Throws ddpm::Error when a block holds both names of one tensor.
WeightMap rename_legacy_attention_keys(WeightMap weights, const std::string& source);

// Writes a DDPMPipeline folder: model_index.json, unet/config.json,
// unet/diffusion_pytorch_model.safetensors (float32) and scheduler/scheduler_config.json, each
// atomically. Refuses a folder that exists and is not empty unless `overwrite` (which replaces
// those four files and nothing else). `warnings` gets what diffusers cannot say
// (diffusers_config.h).
void write_diffusers_pipeline(const std::filesystem::path& folder, const Config& config,
                              const WeightMap& weights, bool overwrite,
                              std::vector<std::string>& warnings);

}  // namespace ddpm
