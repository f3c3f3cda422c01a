// The training loop; see trainer.h.
#include "ddpm/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "ddpm/atomic_file.h"
#include "ddpm/checkpoint.h"
#include "ddpm/config_json.h"
#include "ddpm/dataset.h"
#include "ddpm/device.h"
#include "ddpm/error.h"
#include "ddpm/log.h"
#include "ddpm/sample_grid.h"
#include "ddpm/train_step.h"
#include "ddpm/training_state.h"
#include "ddpm/unet.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

// The run directory: refuses to mix a new run into an old one, records config and command.
void prepare_run_dir(const Config& config, const TrainRun& run) {
  const bool has_checkpoints = !list_checkpoints(run.run_dir).empty();
  if (run.resume && !has_checkpoints) {
    throw Error(ErrorKind::usage, "--resume: run directory '" + run.run_dir.string() +
                                      "' has no checkpoint to resume from; start without "
                                      "--resume");
  }
  if (!run.resume && has_checkpoints) {
    throw Error(ErrorKind::usage, "run directory '" + run.run_dir.string() +
                                      "' already holds checkpoints; pass --resume to continue "
                                      "that run, or choose another --out");
  }
  std::error_code error;
  fs::create_directories(run.run_dir / "checkpoints", error);
  fs::create_directories(run.run_dir / "samples", error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot create run directory '" + run.run_dir.string() +
                                        "': " + error.message());
  }
  write_file_atomically(run.run_dir / "config.json", config_to_json(config).dump(2) + "\n");
  std::ofstream(run.run_dir / "command.txt", std::ios::app) << run.command_line << "\n";
}

// On resume, drops metric lines past the checkpoint's step: those steps are run again.
void truncate_metrics(const fs::path& file, int64_t step) {
  std::ifstream in(file);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (!parsed.is_discarded() && parsed.contains("step") && parsed["step"].is_number_integer() &&
        parsed["step"].get<int64_t>() <= step) {
      kept += line + "\n";
    }
  }
  write_file_atomically(file, kept);
}

std::string format_number(double value) {
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

}  // namespace

TrainSummary train(const Config& config, const TrainRun& run) {
  const TrainConfig& options = config.train;
  // Everything that can fail on bad input (device, data) fails before the run directory is made.
  const torch::Device device = resolve_device(options.device);
  bool bf16 = options.precision == "bf16";
  if (bf16 && !device.is_cuda()) {
    log::warn("train.precision bf16 autocasts on CUDA only; training in fp32 on " + device.str());
    bf16 = false;
  }
  log::info("training on " + describe_device(device) + ", run directory " + run.run_dir.string());

  DataLoader loader(scan_image_folder(config.data.path), config.data, options.batch_size,
                    options.seed);
  prepare_run_dir(config, run);
  torch::manual_seed(options.seed);  // initial weights and dropout
  UNet model(config.model, config.data);
  UNet ema_model(config.model, config.data);
  copy_weights(*model, *ema_model);
  model->to(device);
  ema_model->to(device);
  ema_model->eval();
  const NoiseSchedule schedule = NoiseSchedule(config.diffusion).to(device);
  TrainStep train_step(model, ema_model, schedule, options, bf16);
  torch::optim::Adam& optimizer = train_step.optimizer();
  at::Generator noise_generator = at::detail::createCPUGenerator(options.seed + 1);

  TrainSummary summary;
  int64_t step = 0;
  if (run.resume) {
    const fs::path file = resolve_checkpoint(run.run_dir);
    const TrainingState state = load_checkpoint(file);
    check_resumable(state, config, file);
    restore_training_state(state, model, ema_model, optimizer, noise_generator, device);
    loader.restore({state.loader_epoch, state.loader_batch});
    step = state.step;
    summary.last_checkpoint = file;
    truncate_metrics(run.run_dir / "metrics.jsonl", step);
    log::info("resumed from " + file.string() + " at step " + std::to_string(step));
  }
  summary.first_step = step;
  std::ofstream metrics(run.run_dir / "metrics.jsonl", std::ios::app);

  const auto save = [&] {
    TrainingState state = capture_training_state(model, ema_model, optimizer, noise_generator,
                                                 device);
    state.step = step;
    state.config = config_to_json(config);
    const LoaderState position = loader.state();
    state.loader_epoch = position.epoch;
    state.loader_batch = position.batch;
    publish_checkpoint(run.run_dir, state, options.keep_checkpoints);
    summary.last_checkpoint = checkpoint_file(run.run_dir, step);
  };

  const auto start = std::chrono::steady_clock::now();
  auto interval_start = start;
  torch::Tensor interval_loss = torch::zeros({}, torch::TensorOptions().device(device));
  int64_t interval_steps = 0;
  TrainProgress progress;
  progress.total = options.steps;
  progress.first_step = step;
  model->train();

  while (step < options.steps) {
    if (run.stop_requested && run.stop_requested->load()) {
      summary.interrupted = true;
      break;
    }
    const auto x0 = loader.next().to(device, /*non_blocking=*/true);
    const TrainStep::Result result = train_step.run(x0, noise_generator, step);
    const double grad_norm = result.grad_norm;
    const double lr = learning_rate(options, step);
    if (!result.applied) {
      if (options.on_nonfinite == "stop") {
        throw Error(ErrorKind::runtime,
                    "non-finite loss or gradient at step " + std::to_string(step + 1) +
                        "; stopped without saving it. The last good checkpoint is " +
                        (summary.last_checkpoint.empty() ? std::string("none")
                                                         : summary.last_checkpoint.string()) +
                        ". Lower train.lr, or set train.on_nonfinite=skip to skip such steps");
      }
      ++summary.skipped_steps;
      log::warn("non-finite gradient at step " + std::to_string(step + 1) + ": step skipped (" +
                std::to_string(summary.skipped_steps) + " so far)");
    } else {
      interval_loss += result.loss.detach();
      ++interval_steps;
    }
    ++step;

    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                         start).count();
    if (step % options.log_every == 0 || step == options.steps) {
      const auto now = std::chrono::steady_clock::now();
      const double interval = std::chrono::duration<double>(now - interval_start).count();
      const int64_t interval_images =
          (step % options.log_every == 0 ? options.log_every : step % options.log_every) *
          int64_t(options.batch_size);
      progress.loss = interval_steps ? interval_loss.item<double>() / double(interval_steps)
                                     : std::nan("");
      progress.images_per_second = interval > 0 ? double(interval_images) / interval : 0.0;
      metrics << nlohmann::json{{"step", step},
                                {"loss", progress.loss},
                                {"lr", lr},
                                {"grad_norm", grad_norm},
                                {"images_per_s", progress.images_per_second},
                                {"wall_time_s", elapsed}}
                     .dump()
              << "\n";
      metrics.flush();
      summary.last_loss = progress.loss;
      interval_loss.zero_();
      interval_steps = 0;
      interval_start = now;
    }
    progress.step = step;
    progress.lr = lr;
    progress.elapsed_seconds = elapsed;
    if (run.on_progress) run.on_progress(progress);
    // Checkpoints and grids are not training: keep their time out of images/s.
    const auto pause_start = std::chrono::steady_clock::now();
    if (step % options.checkpoint_every == 0 || step == options.steps) save();
    if (options.sample_every > 0 && step % options.sample_every == 0) {
      write_sample_grid(ema_model, schedule, config, sample_grid_file(run.run_dir, step), step);
    }
    interval_start += std::chrono::steady_clock::now() - pause_start;
  }
  if (summary.interrupted && (summary.last_checkpoint.empty() ||
                              summary.last_checkpoint != checkpoint_file(run.run_dir, step))) {
    save();
  }
  summary.last_step = step;
  log::info("stopped at step " + std::to_string(step) + " (loss " +
            format_number(summary.last_loss) + "); checkpoint " +
            summary.last_checkpoint.string());
  return summary;
}

}  // namespace ddpm
