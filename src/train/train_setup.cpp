// The config and starting weights of a training run; see train_setup.h.
#include "train/train_setup.h"

#include <chrono>

#include "base/log.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "distributed/data_parallel.h"
#include "train/training_state.h"

namespace ddpm {

TrainSetup prepare_training(const std::string& config_file, std::vector<std::string> overrides,
                            const std::string& data, const std::filesystem::path& run_dir,
                            bool resume, const std::string& init_from) {
  if (!data.empty()) {
    overrides.push_back("data.path=" + std::filesystem::absolute(data).string());
  }
  TrainSetup setup;
  if (!config_file.empty()) {
    setup.config = load_config(config_file, overrides);
  } else if (resume && std::filesystem::exists(run_dir / "config.json")) {
    setup.config = load_config(run_dir / "config.json", overrides);
  } else {
    throw Error(ErrorKind::usage, "ddpm train needs --config FILE (e.g. configs/tiny.json), or "
                                  "--resume with an --out run directory");
  }
  if (setup.config.distill.start_steps > 0) {
    throw config_error("distill.start_steps",
                       "is set: this is a distillation's config; run it with ddpm distill (or "
                       "set distill.start_steps 0 to train the model with ddpm train)");
  }
  if (setup.config.data.path.empty()) {
    throw config_error("data.path", "no image folder given; set data.path or pass --data DIR");
  }
  if (!init_from.empty()) {
    if (resume) {
      throw Error(ErrorKind::usage, "--init-from starts a new run and --resume continues one from "
                                    "its own checkpoint; drop --init-from to resume");
    }
    setup.init = load_model_source(init_from);
    for (const auto& warning : setup.init.warnings) log::warn(warning);
    check_same_model(setup.init.config, setup.config, "--init-from '" + init_from + "'");
    setup.fine_tune = true;
    setup.init_source = setup.init.diffusers
                            ? setup.init.origin
                            : "checkpoint '" + setup.init.path.string() + "' (step " +
                                  std::to_string(setup.init.step) + ", EMA weights)";
  }
  return setup;
}

// In a multi-process run: the process group, after checking that every rank runs the same
// config, since every rank must make the same collective calls (only the data may sit at
// another path on each node). Alone: none.
std::unique_ptr<ProcessGroup> join_training_ranks(const Config& config, const DistributedEnv& env,
                                                  torch::Device device) {
  if (!env.distributed()) return nullptr;
  auto group = std::make_unique<ProcessGroup>(env, device,
                                              std::chrono::seconds(config.train.dist_timeout_s));
  const int batch = config.train.batch_size;
  log::info(std::to_string(env.world_size) + " processes (" + group->backend_name() +
            ", launched by " + env.launcher + "), global batch " + std::to_string(batch) +
            " = " + std::to_string(env.world_size) + " x " +
            std::to_string(batch / env.world_size));
  nlohmann::json shared = config_to_json(config);
  shared["data"].erase("path");
  const uint64_t config_hash = std::hash<std::string>{}(shared.dump()) & ((1ull << 52) - 1);
  check_same_value(*group, static_cast<int64_t>(config_hash),
                   "the config (a hash of it, data.path aside)",
                   "start every rank with the same --config and --set options");
  return group;
}

void attach_init_weights(const TrainSetup& setup, TrainRun& run) {
  if (!setup.fine_tune) return;
  run.init_weights = &setup.init.ema;
  run.init_source = setup.init_source;
}

}  // namespace ddpm
