// `ddpm train`: train on an image folder; resumable, stoppable with Ctrl-C / SIGTERM.
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <optional>

#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/ddpm.h"
#include "ddpm/error.h"
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

}  // namespace

std::string command_line(int argc, char** argv) {
  std::string text = "ddpm";
  for (int i = 0; i < argc; ++i) text += std::string(" ") + argv[i];
  return text;
}

int run_train(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm train",
      "Trains the UNet epsilon-predictor on an image folder with L_simple (train.loss; hybrid "
      "and vlb also train learned variances, model.learn_variance). The run directory "
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
  TrainRequest request;
  request.config_file = text("config");
  request.overrides = overrides;
  request.data = text("data");
  request.run_dir = run_dir.string();
  request.resume = resume;
  request.init_from = text("init-from");
  request.command_line = command_line(argc, argv);
  return run_training_request(request, run_dir, "train");
}

int run_training_request(TrainRequest& request, const std::filesystem::path& run_dir,
                         const std::string& command) {
  request.stop = &stop_requested;
  request.launcher_environment = true;  // one rank of torchrun's or srun's, or alone
  std::optional<ProgressDisplay> display;
  request.on_step = [&](const TrainStepReport& report) {
    if (report.rank != 0) return;  // rank 0 speaks for the run
    if (!display) display.emplace("step", report.log_every);
    char detail[96];
    std::snprintf(detail, sizeof detail, "loss %.4f  lr %.2e  %.1f img/s", report.loss, report.lr,
                  report.images_per_second);
    display->update(report.step, report.total, report.elapsed_seconds, detail,
                    report.first_step);
  };
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  const TrainReport report = train_model(request);
  if (display) display->finish();
  if (report.stopped && report.rank != 0) return 130;
  if (report.stopped) {
    log::warn("interrupted at step " + std::to_string(report.last_step) + "; checkpoint " +
              report.last_checkpoint + ". Continue with: ddpm " + command + " --out " +
              run_dir.string() + " --resume");
    return 130;
  }
  log::info("done: " + std::to_string(report.last_step) + " steps; checkpoint " +
            report.last_checkpoint + "; samples in " + (run_dir / "samples").string());
  return 0;
}

}  // namespace ddpm::cli
