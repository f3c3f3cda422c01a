// The weights a command starts from, wherever they are: a ddpm checkpoint file, a run directory
// (its latest checkpoint), or a diffusers folder in either layout (diffusers_folder.h). `ddpm
// sample --checkpoint`, `ddpm train --init-from`, `ddpm export --checkpoint` and `ddpm config
// --checkpoint` all read through here, so each takes all three.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "formats/checkpoint.h"
#include "model/compiled_network.h"

namespace ddpm {

struct ModelSource {
  std::filesystem::path path;    // the checkpoint file or the diffusers folder read
  bool diffusers = false;        // a diffusers folder: one set of weights, no training state
  Config config;                 // the model's config
  TensorMap model, ema;          // the raw and EMA weights (the same tensors for diffusers)
  int64_t step = 0;              // the checkpoint's step (0 for a diffusers folder)
  std::string origin;            // where the weights came from (see TrainingState::source)
  std::vector<std::string> warnings;  // diffusers fields read but not applied
  // A compiled package (ddpm compile): its metadata; no weights (model and ema are empty).
  std::optional<PackageInfo> package;
};

// Throws ddpm::Error naming the path when it does not exist, is neither a checkpoint, a run
// directory nor a diffusers folder, or is any of them but unreadable. A compiled package (.pt2)
// holds no weights to train, export or import from: refused (usage), naming its checkpoint.
ModelSource load_model_source(const std::filesystem::path& path);

// What sampling starts from: load_model_source's sources, and a compiled package (.pt2, its
// metadata read and checked, compiled_network.h).
ModelSource load_sampling_source(const std::filesystem::path& path);

// What `ddpm import` writes: a checkpoint at step 0 with the source's config, its weights as
// both model and EMA, no optimizer or generator state, and the source recorded.
TrainingState imported_checkpoint(const ModelSource& source);

}  // namespace ddpm
