// The training loop; see trainer.h.
#include "ddpm/trainer.h"

#include <chrono>
#include <cmath>
#include <functional>
#include <optional>
#include <sstream>

#include "ddpm/atomic_file.h"
#include "ddpm/checkpoint.h"
#include "ddpm/class_folders.h"
#include "ddpm/config_json.h"
#include "ddpm/data_parallel.h"
#include "ddpm/dataset.h"
#include "ddpm/device.h"
#include "ddpm/error.h"
#include "ddpm/log.h"
#include "ddpm/loss_scaler.h"
#include "ddpm/precision.h"
#include "ddpm/process_group.h"
#include "ddpm/run_lock.h"
#include "ddpm/run_log.h"
#include "ddpm/sample_grid.h"
#include "ddpm/seed_mix.h"
#include "ddpm/train_step.h"
#include "ddpm/training_eval.h"
#include "ddpm/training_state.h"
#include "ddpm/unet.h"
#include "ddpm/weights.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

// The run directory: refuses to mix a new run into an old one; the writer (rank 0) records
// config and command.
void prepare_run_dir(const Config& config, const TrainRun& run, bool writer) {
  const bool has_checkpoints = !list_checkpoints(run.run_dir).empty();
  if (run.resume && !has_checkpoints) {
    throw Error(ErrorKind::usage,
                "--resume: run directory '" + run.run_dir.string() +
                    "' has no checkpoint to resume from; start without --resume" +
                    (writer ? "" : " (every rank must see the run directory: put it on a "
                                   "shared filesystem)"));
  }
  if (!run.resume && has_checkpoints) {
    throw Error(ErrorKind::usage, "run directory '" + run.run_dir.string() +
                                      "' already holds checkpoints; pass --resume to continue "
                                      "that run, or choose another --out");
  }
  if (!writer) return;
  std::error_code error;
  fs::create_directories(run.run_dir / "checkpoints", error);
  fs::create_directories(run.run_dir / "samples", error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot create run directory '" + run.run_dir.string() +
                                        "': " + error.message());
  }
  // Under the lock nothing else writes here: temporary files are what a killed run left.
  int stale = 0;
  for (const char* folder : {"", "checkpoints", "samples"}) {
    stale += remove_stale_temporaries(run.run_dir / folder);
  }
  if (stale > 0) {
    log::info("removed " + std::to_string(stale) + " temporary file(s) left by a killed run in " +
              run.run_dir.string());
  }
  // A fresh start in a directory without checkpoints: metric lines there are of a run that was
  // killed before its first checkpoint, and its steps are about to run again.
  if (!run.resume && fs::exists(run.run_dir / "metrics.jsonl", error)) {
    drop_metrics_after(run.run_dir / "metrics.jsonl", 0);
  }
  write_file_atomically(run.run_dir / "config.json", config_to_json(config).dump(2) + "\n");
  AppendOnlyFile(run.run_dir / "command.txt").append_line(run.command_line);
}

// A run file that cannot be written (a full disk) stops the run: says where to continue from.
Error stopped_by_write_failure(const Error& error, const fs::path& last_checkpoint) {
  return Error(error.kind(),
               std::string(error.what()) + ". Training stopped; " +
                   (last_checkpoint.empty()
                        ? std::string("no checkpoint was written yet: free space and start again")
                        : "the last good checkpoint is " + last_checkpoint.string() +
                              ": free space, then run the same command with --resume"));
}

std::string format_number(double value) {
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

// In a multi-process run: the process group, after checking that every rank runs the same
// config, since every rank must make the same collective calls (only the data may sit at
// another path on each node). Alone: none.
std::unique_ptr<ProcessGroup> join_ranks(const Config& config, const DistributedEnv& env,
                                         torch::Device device) {
  if (!env.distributed()) return nullptr;
  auto group = std::make_unique<ProcessGroup>(env, device,
                                              std::chrono::seconds(config.train.dist_timeout_s));
  const int batch = config.train.batch_size;
  log::info(std::to_string(env.world_size) + " processes (" + group->backend_name() +
            ", launched by " + env.launcher + "), global batch " + std::to_string(batch) +
            " = " + std::to_string(env.world_size) + " x " + std::to_string(batch / env.world_size));
  nlohmann::json shared = config_to_json(config);
  shared["data"].erase("path");
  const uint64_t config_hash = std::hash<std::string>{}(shared.dump()) & ((1ull << 52) - 1);
  check_same_value(*group, static_cast<int64_t>(config_hash),
                   "the config (a hash of it, data.path aside)",
                   "start every rank with the same --config and --set options");
  return group;
}

}  // namespace

TrainSummary train(const Config& requested, const TrainRun& run) {
  // Labelled data: the classes come from the folder (and must match a resumed run's).
  std::optional<ClassFolders> folders;
  if (requested.data.labels == "folders") {
    folders = scan_class_folders(requested.data.path, requested.data.max_files);
  }
  const Config config = with_class_labels(requested, folders ? &*folders : nullptr);
  const TrainConfig& options = config.train;
  const DistributedEnv& env = run.distributed;
  const bool writer = env.rank == 0;  // only rank 0 writes the run directory
  // Everything that can fail on bad input (device, data) fails before the run directory is made.
  const torch::Device device = rank_device(options.device, env);
  const Precision precision = precision_from_name(options.precision, "train.precision");
  if (precision != Precision::fp32 && !device.is_cuda()) {
    log::warn("train.precision " + options.precision + " on the CPU: autocast runs there, but " +
              (precision == Precision::fp16
                   ? std::string("fp16 training is many times slower than fp32 (no CPU kernels "
                                 "for its backward pass)")
                   : std::string("bf16 trains slower than fp32 even on processors with "
                                 "AMX")) +
              "; mixed precision pays on GPUs (bf16 on A100/H100 and newer, fp16 on V100/T4)");
  }
  check_batch_split(options.batch_size, env.world_size);
  if ((options.batch_size / env.world_size) % options.grad_accumulation != 0) {
    throw Error(ErrorKind::config,
                "train.grad_accumulation (" + std::to_string(options.grad_accumulation) +
                    ") must divide each process's part of the batch (" +
                    std::to_string(options.batch_size / env.world_size) + " = " +
                    std::to_string(options.batch_size) + " / " +
                    std::to_string(env.world_size) + " processes)");
  }
  const std::unique_ptr<ProcessGroup> group = join_ranks(config, env, device);
  log::info("training on " + describe_device(device) + ", run directory " + run.run_dir.string());

  if (folders) {
    log::info(std::to_string(folders->names.size()) + " classes (image folders of " +
              config.data.path + "; images per class): " + describe_classes(*folders));
  }
  DataLoader loader(folders ? folders->files
                            : scan_image_folder(config.data.path, config.data.max_files),
                    config.data, options.batch_size, options.seed, env.rank, env.world_size,
                    folders ? folders->labels : std::vector<int64_t>{});
  // Pinned batches: the copy to the GPU (non-blocking, below) overlaps the previous step.
  loader.pin_memory(device.is_cuda());
  const int64_t local_batch = options.batch_size / env.world_size;
  std::optional<TrainingEvaluator> evaluator;
  if (writer && options.eval_every > 0) {
    evaluator.emplace(config, device);
    log::info("evaluating " + std::to_string(options.eval_samples) + " EMA samples every " +
              std::to_string(options.eval_every) + " steps against " +
              std::to_string(evaluator->real_images()) + " real images (" + options.eval_real +
              ")");
  }
  // Rank 0 holds the run directory for the run's life: taken before the checkpoint check, so that
  // two fresh starts cannot both see an empty directory.
  std::optional<RunDirLock> lock;
  if (writer) lock.emplace(run.run_dir);
  prepare_run_dir(config, run, writer);
  torch::manual_seed(options.seed);  // initial weights and dropout
  UNet model(config.model, config.data);
  UNet ema_model(config.model, config.data);
  if (run.init_weights && !run.resume) {
    load_state_dict(*model, *run.init_weights, "--init-from " + run.init_source);
    log::info("starting from the weights of " + run.init_source);
  }
  copy_weights(*model, *ema_model);
  std::string weights_source = run.resume ? "" : run.init_source;
  model->to(device);
  ema_model->to(device);
  model->set_channels_last(prefers_channels_last(device));  // before the optimizer's state
  ema_model->set_channels_last(prefers_channels_last(device));
  ema_model->eval();
  const NoiseSchedule schedule = NoiseSchedule(config.diffusion).to(device);
  TrainStep train_step(model, ema_model, schedule, options, loss_options(config), precision,
                       group.get());
  LossScaler* const scaler = train_step.loss_scaler();
  torch::optim::Adam& optimizer = train_step.optimizer();

  TrainSummary summary;
  int64_t step = 0;
  if (run.resume) {
    const fs::path file = resolve_checkpoint(run.run_dir);
    const TrainingState state = load_checkpoint(file);
    check_resumable(state, config, file);
    restore_training_state(state, model, ema_model, optimizer, device);
    weights_source = state.source;
    loader.restore({state.loader_epoch, state.loader_batch});
    step = state.step;
    summary.skipped_steps = state.skipped_steps;
    if (scaler && state.loss_scale > 0.0) {
      scaler->restore({state.loss_scale, state.loss_scale_good_steps});
    }
    summary.last_checkpoint = file;
    if (writer) drop_metrics_after(run.run_dir / "metrics.jsonl", step);
    log::info("resumed from " + file.string() + " at step " + std::to_string(step));
  }
  if (group) {
    check_same_value(*group, step, "the step to start from",
                     "the ranks read different checkpoints; put the run directory on a "
                     "filesystem every rank sees, and give every rank the same --out");
    broadcast_module(*group, *model);
    broadcast_module(*group, *ema_model);
    // Each rank draws its own dropout masks (a single process draws one stream for the batch).
    at::Generator dropout = at::globalContext().defaultGenerator(device);
    dropout.set_current_seed(splitmix64(splitmix64(options.seed ^ static_cast<uint64_t>(step)) ^
                                        static_cast<uint64_t>(env.rank)));
  }
  summary.first_step = step;
  std::optional<AppendOnlyFile> metrics;
  if (writer) metrics.emplace(run.run_dir / "metrics.jsonl");
  fs::path last_good_checkpoint = run.resume ? summary.last_checkpoint : fs::path();
  const auto write_metrics = [&](const nlohmann::json& line) {
    try {
      metrics->append_line(line.dump());
    } catch (const Error& error) {
      throw stopped_by_write_failure(error, last_good_checkpoint);
    }
  };

  const auto save = [&] {
    summary.last_checkpoint = checkpoint_file(run.run_dir, step);
    if (!writer) return;
    TrainingState state = capture_training_state(model, ema_model, optimizer, device);
    state.step = step;
    state.config = config_to_json(config);
    state.source = weights_source;
    const LoaderState position = loader.state();
    state.loader_epoch = position.epoch;
    state.loader_batch = position.batch;
    state.skipped_steps = summary.skipped_steps;
    if (scaler) {
      state.loss_scale = scaler->state().scale;
      state.loss_scale_good_steps = scaler->state().good_steps;
    }
    try {
      publish_checkpoint(run.run_dir, state, options.keep_checkpoints);
    } catch (const Error& error) {
      throw stopped_by_write_failure(error, last_good_checkpoint);
    }
    last_good_checkpoint = summary.last_checkpoint;
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
    const bool stop_wanted = run.stop_requested && run.stop_requested->load();
    if (stop_wanted && !group) {  // alone: stop at once; with other ranks: vote in the step
      summary.interrupted = true;
      break;
    }
    const DataLoader::Batch batch = loader.next_batch();
    const auto x0 = batch.images.to(device, /*non_blocking=*/true);
    const NoiseKey noise{options.seed, step, int64_t{env.rank} * local_batch};
    const TrainStep::Result result =
        train_step.run(x0, noise, step, stop_wanted, batch.labels);
    const double grad_norm = result.grad_norm;
    const double lr = learning_rate(options, step);
    if (result.overflow) {
      ++summary.skipped_steps;
      if (result.scale_collapsed) {
        throw Error(ErrorKind::runtime,
                    "fp16 loss scale fell to " + format_number(result.loss_scale) +
                        ", below train.loss_scale_min (" + format_number(options.loss_scale_min) +
                        "), at step " + std::to_string(step + 1) +
                        ": the gradients overflow even unscaled, so the run has diverged or its "
                        "activations exceed fp16's range (65504). Stopped without saving; the "
                        "last good checkpoint is " +
                        (summary.last_checkpoint.empty() ? std::string("none")
                                                         : summary.last_checkpoint.string()) +
                        ". Lower train.lr, or train in bf16 or fp32");
      }
      log::info("fp16 gradient overflow at step " + std::to_string(step + 1) +
                ": step skipped, loss scale now " + format_number(result.loss_scale) + " (" +
                std::to_string(summary.skipped_steps) + " skipped so far)");
    } else if (!result.applied) {
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
    if (step % options.log_every == 0 || step == options.steps || result.stop) {
      const auto now = std::chrono::steady_clock::now();
      const double interval = std::chrono::duration<double>(now - interval_start).count();
      const int64_t interval_images =
          (step % options.log_every == 0 ? options.log_every : step % options.log_every) *
          int64_t(options.batch_size);
      if (group) group->sum(interval_loss);  // the mean over every rank's part of the batch
      progress.loss = interval_steps ? interval_loss.item<double>() /
                                           double(interval_steps * env.world_size)
                                     : std::nan("");
      progress.images_per_second = interval > 0 ? double(interval_images) / interval : 0.0;
      if (writer) {
        nlohmann::json line = {{"step", step},
                               {"loss", progress.loss},
                               {"lr", lr},
                               {"grad_norm", grad_norm},
                               {"ema_decay", result.ema_decay},
                               {"images_per_s", progress.images_per_second},
                               {"wall_time_s", elapsed},
                               {"skipped_steps", summary.skipped_steps}};
        if (scaler) line["loss_scale"] = result.loss_scale;
        write_metrics(line);
      }
      summary.last_loss = progress.loss;
      interval_loss.zero_();
      interval_steps = 0;
      interval_start = now;
    }
    progress.step = step;
    progress.lr = lr;
    progress.elapsed_seconds = elapsed;
    if (run.on_progress) run.on_progress(progress);
    if (result.stop) {
      summary.interrupted = true;
      break;
    }
    // Checkpoints and grids are not training: keep their time out of images/s.
    const auto pause_start = std::chrono::steady_clock::now();
    if (step % options.checkpoint_every == 0 || step == options.steps) save();
    if (writer && options.sample_every > 0 && step % options.sample_every == 0) {
      try {
        write_sample_grid(ema_model, schedule, config, sample_grid_file(run.run_dir, step), step);
      } catch (const Error& error) {  // a grid is for looking at: the run goes on without it
        log::warn(std::string(error.what()) + "; sample grid of step " + std::to_string(step) +
                  " skipped, training goes on");
      }
    }
    if (evaluator && (step % options.eval_every == 0 || step == options.steps)) {
      nlohmann::json quality = evaluator->evaluate(ema_model, schedule);
      log::info("step " + std::to_string(step) + ": FID " +
                format_number(quality["fid"].get<double>()) + ", KID " +
                format_number(quality["kid_mean"].get<double>()) + ", precision " +
                format_number(quality["precision"].get<double>()) + ", recall " +
                format_number(quality["recall"].get<double>()) + " (" +
                std::to_string(options.eval_samples) + " EMA samples, " +
                format_number(quality["eval_seconds"].get<double>()) + " s)");
      quality["step"] = step;
      write_metrics(quality);
    }
    interval_start += std::chrono::steady_clock::now() - pause_start;
  }
  if (summary.interrupted) save();
  if (group) {
    const std::string after = "after step " + std::to_string(step);
    check_same_weights(*group, *model, "the model " + after);
    check_same_weights(*group, *ema_model, "the EMA model " + after);
    group->barrier();  // rank 0's last checkpoint is complete when any rank returns
  }
  summary.last_step = step;
  log::info("stopped at step " + std::to_string(step) + " (loss " +
            format_number(summary.last_loss) + "); checkpoint " +
            summary.last_checkpoint.string());
  return summary;
}

}  // namespace ddpm
