// Moving a training run's live state (model, EMA, Adam moments, random generators) into a
// TrainingState for a checkpoint, and back, plus the check that a checkpoint fits a config.
#pragma once

#include <filesystem>

#include "config/config.h"
#include "formats/checkpoint.h"
#include "model/unet.h"

namespace ddpm {

// Everything but step, config and the loader position, which the trainer fills in.
TrainingState capture_training_state(const UNet& model, const UNet& ema, torch::optim::Adam& optimizer,
                                     torch::Device device);

// A module's parameters and buffers by name (CPU tensors; on the CPU they share the module's
// storage, so save them before the next step).
TensorMap module_weights(const torch::nn::Module& module);

void restore_training_state(const TrainingState& state, UNet& model, UNet& ema,
                            torch::optim::Adam& optimizer, torch::Device device);

// Throws ddpm::Error (config) when the checkpoint's model or image shape differs from
// `config`'s, naming the first differing key and both values. Other sections may differ
// (a resumed run may train for more steps, log more often, ...).
void check_resumable(const TrainingState& state, const Config& config,
                     const std::filesystem::path& file);

// Throws ddpm::Error (config) when a config's model section (but its training-only keys, such
// as dropout) or image shape differs from those of the weights' `source_config`, naming the
// first differing key, both values and `source` (e.g. "--init-from 'models/x'").
void check_same_model(const Config& source_config, const Config& config,
                      const std::string& source);

}  // namespace ddpm
