// A training run: L_simple on an image folder with Adam, linear warm-up, gradient clipping and
// an EMA of the weights; a run directory with the resolved config, metrics, checkpoints and
// sample grids; resumable exactly (same seed, same device: the same losses and weights as an
// uninterrupted run), and stoppable between steps.
//
// Data-parallel over several processes (TrainRun::distributed): every rank builds the same
// model, rank 0's weights are broadcast, each rank trains on its part of the global batch
// (train.batch_size) and the gradients are averaged, so every rank holds the same weights.
// Only rank 0 writes the run directory; resuming needs it on a filesystem every rank sees.
// Noise and data depend on the global example index, not on the number of ranks, so a run
// gives the same result, up to float rounding and dropout masks, at any number of ranks, and
// resumes at any number of ranks.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>

#include "config/config.h"
#include "distributed/distributed_env.h"
#include "formats/checkpoint.h"

namespace ddpm {

// What the run reports after every step (for a progress display).
struct TrainProgress {
  int64_t step = 0;        // steps completed
  int64_t first_step = 0;  // the step this process started from (after a resume)
  int64_t total = 0;
  double loss = 0.0;  // the last logged mean loss
  double lr = 0.0;
  double images_per_second = 0.0;
  double elapsed_seconds = 0.0;
};

struct TrainRun {
  std::filesystem::path run_dir;
  bool resume = false;          // continue from run_dir's latest checkpoint
  std::string command_line;     // recorded in run_dir/command.txt
  // Checked before every step; when true the run writes a checkpoint and returns. With several
  // ranks, a rank that sees it votes to stop within the next step, and all stop after it.
  const std::atomic<bool>* stop_requested = nullptr;
  DistributedEnv distributed;  // this process's place in a multi-process run (default: alone)
  // A new run starts from these weights (fine-tuning) instead of a random initialisation, with
  // the EMA equal to them and a fresh optimizer; `init_source` is recorded in its checkpoints.
  // They must fit the config's model (check_same_model in training_state.h). Not for --resume.
  const TensorMap* init_weights = nullptr;
  std::string init_source;
  std::function<void(const TrainProgress&)> on_progress;
};

struct TrainSummary {
  int64_t first_step = 0;   // the step the run started from (0, or the resumed checkpoint's)
  int64_t last_step = 0;    // steps completed when it returned
  bool interrupted = false;
  double last_loss = 0.0;
  // Steps skipped over the whole run, resumed parts included: non-finite gradients
  // (train.on_nonfinite = skip) and fp16 overflows.
  int64_t skipped_steps = 0;
  std::filesystem::path last_checkpoint;
};

// Runs training to config.train.steps. Throws ddpm::Error for bad data, an unusable run
// directory, a checkpoint that does not fit the config, or a non-finite loss (unless skipped).
TrainSummary train(const Config& config, const TrainRun& run);

}  // namespace ddpm
