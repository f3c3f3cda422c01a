// What a training run starts from, as `ddpm train` and ddpm::train_model (ddpm.h) both resolve
// it: the config (a file, or the run's own config.json on resume) with overrides and the data
// folder applied, and the weights of a fine-tuning run (--init-from); and, for a run of several
// processes, the ranks it joins.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "distributed/process_group.h"
#include "interop/model_source.h"
#include "train/trainer.h"

namespace ddpm {

struct TrainSetup {
  Config config;
  bool fine_tune = false;  // init holds the weights to start from
  ModelSource init;
  std::string init_source;  // what the checkpoints record as the weights' origin
};

// `config_file` empty: the run directory's config.json, which only a resume may use. `data`
// (when not empty) overrides data.path, made absolute. Throws ddpm::Error (usage or config)
// naming what is missing or does not fit: no config, no data folder, --init-from with
// --resume, init weights of another model.
TrainSetup prepare_training(const std::string& config_file, std::vector<std::string> overrides,
                            const std::string& data, const std::filesystem::path& run_dir,
                            bool resume, const std::string& init_from);

// In a multi-process run: the process group, after checking that every rank runs the same
// config (data.path aside). Alone: none.
std::unique_ptr<ProcessGroup> join_training_ranks(const Config& config, const DistributedEnv& env,
                                                  torch::Device device);

// Points run.init_weights and run.init_source at the setup's fine-tuning weights (the setup
// must outlive the run).
void attach_init_weights(const TrainSetup& setup, TrainRun& run);

}  // namespace ddpm
