// `ddpm train`: train on an image folder; resumable, stoppable with Ctrl-C / SIGTERM.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "ddpm/config_json.h"
#include "ddpm/distributed_env.h"
#include "ddpm/error.h"
#include "ddpm/log.h"
#include "ddpm/train_setup.h"
#include "ddpm/trainer.h"
#include "progress.h"

namespace ddpm::cli {
namespace {

std::atomic<bool> stop_requested{false};
std::atomic<std::int64_t> first_signal_ns{0};

// A repeat this soon after the first signal is the same request delivered twice: coreutils
// `timeout` signals its child and then the child's process group, and Slurm signals every
// process of a job step.
constexpr std::int64_t kRepeatWindowNs = 1'000'000'000;

std::int64_t monotonic_ns() {  // clock_gettime is async-signal-safe
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return std::int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
}

void write_stderr(const char* text, std::size_t size) {
  [[maybe_unused]] const auto written = ::write(2, text, size);
}

// First signal: finish the step, checkpoint, exit. A second one at least a second later: exit at
// once; checkpoints are written atomically, so the last one stays loadable.
extern "C" void on_stop_signal(int) {
  const std::int64_t now = std::max<std::int64_t>(monotonic_ns(), 1);
  std::int64_t first = 0;
  if (first_signal_ns.compare_exchange_strong(first, now)) {
    stop_requested.store(true);
    static const char message[] =
        "\nstopping after this step and writing a checkpoint (a second signal, a second or more "
        "later, quits at once)\n";
    write_stderr(message, sizeof message - 1);
    return;
  }
  if (now - first < kRepeatWindowNs) return;
  static const char message[] =
      "\nquitting now, without a checkpoint; the last one written stays loadable\n";
  write_stderr(message, sizeof message - 1);
  ::_exit(130);
}

std::string command_line(int argc, char** argv) {
  std::string text = "ddpm";
  for (int i = 0; i < argc; ++i) text += std::string(" ") + argv[i];
  return text;
}

}  // namespace

int run_train(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm train",
      "Trains the UNet epsilon-predictor with L_simple on an image folder. The run directory "
      "gets config.json, command.txt, metrics.jsonl, checkpoints/ (with `latest`) and "
      "samples/. Several processes train one model together when started by torchrun "
      "(`torchrun --no-python --nproc-per-node=N ddpm train ...`) or by Slurm's srun: "
      "train.batch_size is the global batch, split evenly over them, and only rank 0 writes "
      "the run directory (which must be on a filesystem every rank sees to --resume). "
      "train.precision: bf16 on A100, H100, L4, RTX 30xx/40xx and newer GPUs; fp16 (with a "
      "dynamic loss scale, train.loss_scale_*) on V100, T4, RTX 20xx and older ones, which "
      "lack fast bf16; fp32 on the CPU and to rule precision out when a run misbehaves.");
  add_config_options(options);
  options.add_options()("data", "image folder (overrides data.path)", cxxopts::value<std::string>())(
      "o,out", "run directory (default: runs/<config name>)", cxxopts::value<std::string>())(
      "resume", "continue the run in --out from its latest checkpoint (without --config, with "
                "the run's own config.json)")(
      "init-from", "start a new run from these weights (fine-tuning): a checkpoint (its EMA "
                   "weights), a run directory or a diffusers model folder; the config's model "
                   "section must match them",
      cxxopts::value<std::string>());
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;

  std::vector<std::string> overrides;
  if (arguments.count("set")) overrides = arguments["set"].as<std::vector<std::string>>();
  const bool resume = arguments.count("resume") > 0;
  std::filesystem::path run_dir;
  if (arguments.count("out")) {
    run_dir = arguments["out"].as<std::string>();
  } else {
    const std::string name = arguments.count("config")
                                 ? std::filesystem::path(arguments["config"].as<std::string>())
                                       .stem()
                                       .string()
                                 : "default";
    run_dir = std::filesystem::path("runs") / name;
  }
  const auto text = [&](const char* flag) {
    return arguments.count(flag) ? arguments[flag].as<std::string>() : std::string();
  };
  const TrainSetup setup = prepare_training(text("config"), overrides, text("data"), run_dir,
                                            resume, text("init-from"));
  const Config& config = setup.config;

  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  ProgressDisplay display("step", config.train.log_every);
  TrainRun run;
  run.run_dir = run_dir;
  run.resume = resume;
  run.command_line = command_line(argc, argv);
  run.stop_requested = &stop_requested;
  run.distributed = read_distributed_env();
  attach_init_weights(setup, run);
  log::set_rank(run.distributed.rank);
  const bool main_rank = run.distributed.rank == 0;
  if (main_rank) {
    run.on_progress = [&](const TrainProgress& progress) {
      char detail[96];
      std::snprintf(detail, sizeof detail, "loss %.4f  lr %.2e  %.1f img/s", progress.loss,
                    progress.lr, progress.images_per_second);
      display.update(progress.step, progress.total, progress.elapsed_seconds, detail,
                     progress.first_step);
    };
  }
  const TrainSummary summary = train(config, run);
  display.finish();
  if (summary.interrupted && !main_rank) return 130;
  if (summary.interrupted) {
    log::warn("interrupted at step " + std::to_string(summary.last_step) + "; checkpoint " +
              summary.last_checkpoint.string() + ". Continue with: ddpm train --out " +
              run_dir.string() + " --resume");
    return 130;
  }
  log::info("done: " + std::to_string(summary.last_step) + " steps; checkpoint " +
            summary.last_checkpoint.string() + "; samples in " + (run_dir / "samples").string());
  return 0;
}

}  // namespace ddpm::cli
