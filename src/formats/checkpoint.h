// Training checkpoints: one file with everything a resumed run needs, and the run directory's
// `checkpoints/` folder (step files, a `latest` pointer, the last K kept).
//
// The file is the zip archive of torch.save holding a plain dict, so Python reads it with
// `torch.load(path, weights_only=True)`: keys format_version, step, config (JSON text), model,
// ema and optimizer (dicts of tensors), rng (generator states), loader_epoch, loader_batch,
// skipped_steps, source (text) when the weights started elsewhere, and in fp16 runs loss_scale
// and loss_scale_good_steps (loss_scaler.h). Files written before a field existed lack it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <torch/torch.h>

#include "config/config.h"

namespace ddpm {

// Files of a newer format are refused; bump when the layout changes.
constexpr int64_t kCheckpointFormatVersion = 1;

using TensorMap = std::map<std::string, torch::Tensor>;

struct TrainingState {
  int64_t step = 0;              // optimizer steps completed
  Config config;                 // the run's config (JSON in the file, typed here)
  TensorMap model, ema;          // parameters and buffers by name
  TensorMap optimizer;           // Adam moments and step counts by "<parameter>.<field>"
  TensorMap rng;                 // generator states (uint8 tensors) by name
  int64_t loader_epoch = 0;      // the data loader's position
  int64_t loader_batch = 0;
  // Where the weights came from, when not from this run's own initialisation: the diffusers
  // folder of `ddpm import`, the --init-from of a fine-tuning run. Empty otherwise.
  std::string source;
  int64_t skipped_steps = 0;          // steps skipped so far (non-finite or fp16 overflow)
  double loss_scale = 0.0;            // fp16's loss scale (0: the run is not fp16)
  int64_t loss_scale_good_steps = 0;  // steps without overflow since the scale last changed
  // train.timestep_sampling loss_aware: the resampler's loss history (timestep_resampler.h);
  // empty otherwise.
  TensorMap timestep_sampler;
  // A distillation run (ddpm distill): the current round's teacher. Empty otherwise.
  TensorMap teacher;
};

// Writes atomically (a crash leaves the previous file intact). Throws ddpm::Error on failure.
void save_checkpoint(const std::filesystem::path& path, const TrainingState& state);

// Throws ddpm::Error (runtime) naming the file for a missing, truncated or corrupt file, one of
// a newer format version, one that lacks a field, or one whose config this ddpm cannot read.
TrainingState load_checkpoint(const std::filesystem::path& path);

// run_dir/checkpoints/step_000001000.pt
std::filesystem::path checkpoint_file(const std::filesystem::path& run_dir, int64_t step);

// Saves the step's checkpoint, points run_dir/checkpoints/latest at it, then deletes all but the
// newest `keep` step files.
void publish_checkpoint(const std::filesystem::path& run_dir, const TrainingState& state, int keep);

// A checkpoint file as given, or the one a run directory's `latest` names (with no `latest`,
// the newest step file: a run killed before its first `latest`). Throws ddpm::Error saying
// what is missing.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& file_or_run_dir);

// The step file that the text of a `latest` pointer names: exactly step_<digits>.pt, with one
// optional trailing newline, so the pointer cannot lead out of its checkpoints/ folder. Throws
// ddpm::Error (runtime) naming `pointer` for anything else.
std::string checkpoint_name_from_pointer(std::string_view text,
                                         const std::filesystem::path& pointer);

// The step files of a run directory, oldest first.
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);

}  // namespace ddpm
