// A training run's directory: what a fresh start or a resume may find there, and what a write
// that fails (a full disk) tells the user.
#pragma once

#include <filesystem>

#include "config/config.h"
#include "ddpm/error.h"
#include "train/trainer.h"

namespace ddpm {

// Refuses to mix a new run into an old one (checkpoints without --resume, --resume without
// them); the writer (rank 0) creates checkpoints/ and samples/, removes the temporary files a
// killed run left, drops the metric lines of a run killed before its first checkpoint, and
// records config.json and command.txt. Throws ddpm::Error (usage, runtime).
void prepare_run_dir(const Config& config, const TrainRun& run, bool writer);

// A run file that cannot be written stops the run: `error` with where to continue from.
Error stopped_by_write_failure(const Error& error, const std::filesystem::path& last_checkpoint);

}  // namespace ddpm
