// The training loop; see trainer.h.
#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <functional>
#include <optional>
#include <sstream>

#include "base/atomic_file.h"
#include "base/device.h"
#include "base/log.h"
#include "base/precision.h"
#include "base/run_lock.h"
#include "base/seed_mix.h"
#include "config/config_json.h"
#include "data/class_folders.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "ddpm/error.h"
#include "distributed/data_parallel.h"
#include "distributed/process_group.h"
#include "formats/checkpoint.h"
#include "formats/run_log.h"
#include "formats/weights.h"
#include "model/unet.h"
#include "train/distill_objective.h"
#include "train/distill_rounds.h"
#include "train/run_directory.h"
#include "train/sample_grid.h"
#include "train/tensorboard_writer.h"
#include "train/train_setup.h"
#include "train/train_step.h"
#include "train/training_eval.h"
#include "train/training_state.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

std::string format_number(double value) {
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

// One training run, in named phases: set-up (options, data, run directory, models, resume,
// the ranks' agreement), the step loop (the step policy for skipped steps, logging, then
// checkpoints, grids and evaluation), and the end. The set-up runs in the constructor, in an
// order that matters: everything that can fail on bad input fails before the run directory is
// made, and the initial weights are drawn from the seed after the data loader is made.
class TrainingRun {
 public:
  TrainingRun(const Config& requested, const TrainRun& run);
  TrainSummary run();

 private:
  void check_options() const;
  void open_data();
  void create_models();
  void resume_from_checkpoint();
  void agree_with_other_ranks();
  TrainStep::Result step_once(bool stop_wanted);
  int64_t optimizer_step() const;
  void end_round();
  void count_skipped_step(const TrainStep::Result& result);
  void log_interval(const TrainStep::Result& result, double lr, double elapsed);
  void write_step_outputs();
  void write_sample_grid_or_warn();
  void evaluate();
  void save();
  void write_metrics(const nlohmann::json& line);
  void finish();

  const TrainRun& run_;
  std::optional<ClassFolders> folders_;
  const Config config_;
  const TrainConfig& options_;
  const DistributedEnv& env_;
  const bool writer_;  // only rank 0 writes the run directory
  const torch::Device device_;
  const Precision precision_;
  std::unique_ptr<ProcessGroup> group_;
  std::optional<DataLoader> loader_;
  int64_t local_batch_ = 0;
  std::optional<TrainingEvaluator> evaluator_;
  std::optional<RunDirLock> lock_;
  UNet model_{nullptr};
  UNet ema_model_{nullptr};
  std::string weights_source_;
  std::optional<NoiseSchedule> schedule_;
  std::optional<TrainStep> train_step_;
  std::unique_ptr<DistillationObjective> distill_;  // ddpm distill: the round's teacher
  TrainSummary summary_;
  int64_t step_ = 0;
  std::optional<AppendOnlyFile> metrics_;
  std::optional<TensorBoardWriter> tensorboard_;  // rank 0, with train.tensorboard
  std::filesystem::path last_good_checkpoint_;
  // The current logging interval.
  std::chrono::steady_clock::time_point start_, interval_start_;
  torch::Tensor interval_loss_;
  int64_t interval_steps_ = 0;
  TrainProgress progress_;
};

// Labelled data: the classes come from the folder (and must match a resumed run's).
std::optional<ClassFolders> class_folders_of(const Config& config) {
  if (config.data.labels != LabelSource::folders) return std::nullopt;
  return scan_class_folders(config.data.path, config.data.max_files);
}

TrainingRun::TrainingRun(const Config& requested, const TrainRun& run)
    : run_(run),
      folders_(class_folders_of(requested)),
      config_(with_class_labels(requested, folders_ ? &*folders_ : nullptr)),
      options_(config_.train),
      env_(run.distributed),
      writer_(env_.rank == 0),
      device_(rank_device(options_.device, env_)),
      precision_(options_.precision) {
  check_options();
  group_ = join_training_ranks(config_, env_, device_);
  log::info("training on " + describe_device(device_) + ", run directory " +
            run_.run_dir.string());
  open_data();
  // Rank 0 holds the run directory for the run's life: taken before the checkpoint check, so that
  // two fresh starts cannot both see an empty directory.
  if (writer_) lock_.emplace(run_.run_dir);
  prepare_run_dir(config_, run_, writer_);
  create_models();
  if (run_.resume) resume_from_checkpoint();
  if (group_) agree_with_other_ranks();
  summary_.first_step = step_;
  if (writer_) metrics_.emplace(run_.run_dir / "metrics.jsonl");
  if (writer_ && options_.tensorboard) {
    tensorboard_.emplace(run_.run_dir);
    tensorboard_->text(step_, "config", "```\n" + config_to_json(config_).dump(2) + "\n```");
    tensorboard_->text(step_, "command", run_.command_line);
  }
  last_good_checkpoint_ = run_.resume ? summary_.last_checkpoint : fs::path();
}

void TrainingRun::check_options() const {
  if (precision_ != Precision::fp32 && !device_.is_cuda()) {
    log::warn("train.precision " + precision_name(precision_) + " on the CPU: autocast runs there, but " +
              (precision_ == Precision::fp16
                   ? std::string("fp16 training is many times slower than fp32 (no CPU kernels "
                                 "for its backward pass)")
                   : std::string("bf16 trains slower than fp32 even on processors with "
                                 "AMX")) +
              "; mixed precision pays on GPUs (bf16 on A100/H100 and newer, fp16 on V100/T4)");
  }
  check_batch_split(options_.batch_size, env_.world_size);
  check_grad_accumulation(options_.batch_size / env_.world_size, options_.grad_accumulation,
                          " = " + std::to_string(options_.batch_size) + " / " +
                              std::to_string(env_.world_size) + " processes");
}

// The data loader, and the real side of the evaluation: both read inputs that can be missing.
void TrainingRun::open_data() {
  std::vector<std::filesystem::path> files;
  if (folders_) {
    log::info(describe_scan(folders_->report, config_.data.path));
    log::info(std::to_string(folders_->names.size()) + " classes (image folders of " +
              config_.data.path + "; images per class): " + describe_classes(*folders_));
    files = folders_->files;
  } else {
    ImageFolderScan scan = scan_image_folder_report(config_.data.path, config_.data.max_files);
    log::info(describe_scan(scan, config_.data.path));
    files = std::move(scan.images);
  }
  loader_.emplace(std::move(files), config_.data, options_.batch_size, options_.seed, env_.rank,
                  env_.world_size, folders_ ? folders_->labels : std::vector<int64_t>{});
  // Pinned batches: the copy to the GPU (non-blocking, in the loop) overlaps the previous step.
  loader_->pin_memory(device_.is_cuda());
  local_batch_ = options_.batch_size / env_.world_size;
  if (writer_ && options_.eval_every > 0) {
    evaluator_.emplace(config_, device_);
    log::info("evaluating " + std::to_string(options_.eval_samples) + " EMA samples every " +
              std::to_string(options_.eval_every) + " steps against " +
              std::to_string(evaluator_->real_images()) + " real images (" + options_.eval_real +
              ")");
  }
}

void TrainingRun::create_models() {
  torch::manual_seed(options_.seed);  // initial weights and dropout
  model_ = UNet(config_.model, config_.data);
  ema_model_ = UNet(config_.model, config_.data);
  if (run_.init_weights && !run_.resume) {
    load_state_dict(*model_, *run_.init_weights, "--init-from " + run_.init_source);
    log::info("starting from the weights of " + run_.init_source);
  }
  copy_weights(*model_, *ema_model_);
  weights_source_ = run_.resume ? "" : run_.init_source;
  model_->to(device_);
  ema_model_->to(device_);
  model_->set_channels_last(prefers_channels_last(device_));  // before the optimizer's state
  ema_model_->set_channels_last(prefers_channels_last(device_));
  ema_model_->eval();
  schedule_.emplace(NoiseSchedule(config_.diffusion).to(device_));
  if (config_.distill.start_steps > 0) {
    distill_ = std::make_unique<DistillationObjective>(config_, *schedule_, device_);
    distill_->start_round(0, *model_);  // the teacher's weights (run.init_weights)
  }
  train_step_.emplace(model_, ema_model_, *schedule_, options_, loss_options(config_), precision_,
                      group_.get(), distill_.get());
}

void TrainingRun::resume_from_checkpoint() {
  const fs::path file = resolve_checkpoint(run_.run_dir);
  const TrainingState state = load_checkpoint(file);
  check_resumable(state, config_, file);
  restore_training_state(state, model_, ema_model_, train_step_->optimizer(), device_);
  weights_source_ = state.source;
  loader_->restore({state.loader_epoch, state.loader_batch});
  step_ = state.step;
  summary_.skipped_steps = state.skipped_steps;
  LossScaler* const scaler = train_step_->loss_scaler();
  if (scaler && state.loss_scale > 0.0) {
    scaler->restore({state.loss_scale, state.loss_scale_good_steps});
  }
  if (TimestepResampler* const resampler = train_step_->timestep_resampler()) {
    if (state.timestep_sampler.empty()) {
      log::info("train.timestep_sampling loss_aware: " + file.string() +
                " has no loss history (it sampled t uniformly); the history starts now");
    } else {
      resampler->restore(state.timestep_sampler, "checkpoint '" + file.string() + "'");
    }
  }
  if (distill_) distill_->resume(state.teacher, distill_round(config_, step_), file);
  summary_.last_checkpoint = file;
  if (writer_) drop_metrics_after(run_.run_dir / "metrics.jsonl", step_);
  log::info("resumed from " + file.string() + " at step " + std::to_string(step_));
}

void TrainingRun::agree_with_other_ranks() {
  check_same_value(*group_, step_, "the step to start from",
                   "the ranks read different checkpoints; put the run directory on a "
                   "filesystem every rank sees, and give every rank the same --out");
  broadcast_module(*group_, *model_);
  broadcast_module(*group_, *ema_model_);
  // Each rank draws its own dropout masks (a single process draws one stream for the batch).
  at::Generator dropout = at::globalContext().defaultGenerator(device_);
  dropout.set_current_seed(splitmix64(splitmix64(options_.seed ^ static_cast<uint64_t>(step_)) ^
                                      static_cast<uint64_t>(env_.rank)));
}

TrainSummary TrainingRun::run() {
  start_ = std::chrono::steady_clock::now();
  interval_start_ = start_;
  interval_loss_ = torch::zeros({}, torch::TensorOptions().device(device_));
  progress_.total = options_.steps;
  progress_.first_step = step_;
  model_->train();
  while (step_ < options_.steps) {
    const bool stop_wanted = run_.stop_requested && run_.stop_requested->load();
    if (stop_wanted && !group_) {  // alone: stop at once; with other ranks: vote in the step
      summary_.interrupted = true;
      break;
    }
    const TrainStep::Result result = step_once(stop_wanted);
    const double lr = learning_rate(options_, optimizer_step());
    count_skipped_step(result);
    ++step_;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (step_ % options_.log_every == 0 || step_ == options_.steps || result.stop) {
      log_interval(result, lr, elapsed);
    }
    progress_.step = step_;
    progress_.lr = lr;
    progress_.elapsed_seconds = elapsed;
    if (run_.on_progress) run_.on_progress(progress_);
    // Before a stop, so that a checkpoint at a round's end always holds the next round's start.
    if (distill_ && step_ % config_.distill.steps_per_round == 0) end_round();
    if (result.stop) {
      summary_.interrupted = true;
      break;
    }
    // Checkpoints and grids are not training: keep their time out of images/s.
    const auto pause_start = std::chrono::steady_clock::now();
    write_step_outputs();
    interval_start_ += std::chrono::steady_clock::now() - pause_start;
  }
  finish();
  return summary_;
}

TrainStep::Result TrainingRun::step_once(bool stop_wanted) {
  const DataLoader::Batch batch = loader_->next_batch();
  const auto x0 = batch.images.to(device_, /*non_blocking=*/true);
  const NoiseKey noise{options_.seed, step_, int64_t{env_.rank} * local_batch_};
  return train_step_->run(x0, noise, optimizer_step(), stop_wanted, batch.labels);
}

// The step that sets the warm-up and the EMA ramp: a distillation restarts both every round.
int64_t TrainingRun::optimizer_step() const {
  return distill_ ? step_ % config_.distill.steps_per_round : step_;
}

// A distillation round ends: its student (the EMA weights) is published, sampled and scored,
// then (but after the last round) becomes the next round's teacher and student, with a fresh
// optimizer and EMA.
void TrainingRun::end_round() {
  const int64_t round = step_ / config_.distill.steps_per_round - 1;
  const Config student = student_config(config_, round);
  if (writer_) {
    try {
      publish_student(run_.run_dir, ema_model_, *schedule_, student, step_,
                      "ddpm distill: round " + std::to_string(round + 1) + " of " +
                          run_.run_dir.string(),
                      options_.sample_every > 0);
    } catch (const Error& error) {
      throw stopped_by_write_failure(error, last_good_checkpoint_);
    }
  }
  if (evaluator_) evaluate();
  if (step_ == options_.steps) return;
  distill_->start_round(round + 1, *ema_model_);
  copy_weights(*ema_model_, *model_);
  train_step_.emplace(model_, ema_model_, *schedule_, options_, loss_options(config_), precision_,
                      group_.get(), distill_.get());
  log::info("round " + std::to_string(round + 2) + ": " +
            std::to_string(distill_->teacher_steps()) + "-step teacher, " +
            std::to_string(distill_->teacher_steps() / 2) + "-step student");
}

// The step policy: an fp16 overflow skips the step (and stops the run when the loss scale
// collapses), a non-finite loss or gradient stops the run or skips the step
// (train.on_nonfinite), and an applied step's loss joins the interval's mean.
void TrainingRun::count_skipped_step(const TrainStep::Result& result) {
  const std::string last_good = summary_.last_checkpoint.empty()
                                    ? std::string("none")
                                    : summary_.last_checkpoint.string();
  if (result.overflow) {
    ++summary_.skipped_steps;
    if (result.scale_collapsed) {
      throw Error(ErrorKind::runtime,
                  "fp16 loss scale fell to " + format_number(result.loss_scale) +
                      ", below train.loss_scale_min (" + format_number(options_.loss_scale_min) +
                      "), at step " + std::to_string(step_ + 1) +
                      ": the gradients overflow even unscaled, so the run has diverged or its "
                      "activations exceed fp16's range (65504). Stopped without saving; the "
                      "last good checkpoint is " + last_good +
                      ". Lower train.lr, or train in bf16 or fp32");
    }
    log::info("fp16 gradient overflow at step " + std::to_string(step_ + 1) +
              ": step skipped, loss scale now " + format_number(result.loss_scale) + " (" +
              std::to_string(summary_.skipped_steps) + " skipped so far)");
  } else if (!result.applied) {
    if (options_.on_nonfinite == OnNonfinite::stop) {
      throw Error(ErrorKind::runtime,
                  "non-finite loss or gradient at step " + std::to_string(step_ + 1) +
                      "; stopped without saving it. The last good checkpoint is " + last_good +
                      ". Lower train.lr, or set train.on_nonfinite=skip to skip such steps");
    }
    ++summary_.skipped_steps;
    log::warn("non-finite gradient at step " + std::to_string(step_ + 1) + ": step skipped (" +
              std::to_string(summary_.skipped_steps) + " so far)");
  } else {
    interval_loss_ += result.loss.detach();
    ++interval_steps_;
  }
}

// The mean loss and the speed of the interval since the last line, as a metrics.jsonl line.
void TrainingRun::log_interval(const TrainStep::Result& result, double lr, double elapsed) {
  const auto now = std::chrono::steady_clock::now();
  const double interval = std::chrono::duration<double>(now - interval_start_).count();
  const int64_t interval_images =
      (step_ % options_.log_every == 0 ? options_.log_every : step_ % options_.log_every) *
      int64_t(options_.batch_size);
  if (group_) group_->sum(interval_loss_);  // the mean over every rank's part of the batch
  progress_.loss = interval_steps_ ? interval_loss_.item<double>() /
                                         double(interval_steps_ * env_.world_size)
                                   : std::nan("");
  progress_.images_per_second = interval > 0 ? double(interval_images) / interval : 0.0;
  if (writer_) {
    nlohmann::json line = {{"step", step_},
                           {"loss", progress_.loss},
                           {"lr", lr},
                           {"grad_norm", result.grad_norm},
                           {"ema_decay", result.ema_decay},
                           {"images_per_s", progress_.images_per_second},
                           {"wall_time_s", elapsed},
                           {"skipped_steps", summary_.skipped_steps}};
    if (train_step_->loss_scaler()) line["loss_scale"] = result.loss_scale;
    if (distill_) line.update(round_fields(config_, step_));
    write_metrics(line);
  }
  summary_.last_loss = progress_.loss;
  interval_loss_.zero_();
  interval_steps_ = 0;
  interval_start_ = now;
}

// What a finished step leaves: a checkpoint, a grid, an evaluation, each on its own period (a
// distillation round's end has its own grid and evaluation: end_round).
void TrainingRun::write_step_outputs() {
  if (step_ % options_.checkpoint_every == 0 || step_ == options_.steps) save();
  const bool round_ended = distill_ && step_ % config_.distill.steps_per_round == 0;
  if (round_ended) return;
  if (writer_ && options_.sample_every > 0 && step_ % options_.sample_every == 0) {
    write_sample_grid_or_warn();
  }
  if (evaluator_ && (step_ % options_.eval_every == 0 || step_ == options_.steps)) evaluate();
}

void TrainingRun::write_sample_grid_or_warn() {
  try {
    write_sample_grid(ema_model_, *schedule_,
                      distill_ ? student_config(config_, distill_round(config_, step_ - 1))
                               : config_,
                      sample_grid_file(run_.run_dir, step_), step_);
    if (tensorboard_) {
      tensorboard_->image_file(step_, "samples", sample_grid_file(run_.run_dir, step_));
    }
  } catch (const Error& error) {  // a grid is for looking at: the run goes on without it
    log::warn(std::string(error.what()) + "; sample grid of step " + std::to_string(step_) +
              " skipped, training goes on");
  }
}

void TrainingRun::evaluate() {
  // A distillation's student samples on its own grid.
  if (distill_) {
    evaluator_->set_sample(student_config(config_, distill_round(config_, step_ - 1)).sample);
  }
  nlohmann::json quality = evaluator_->evaluate(ema_model_, *schedule_);
  log_quality(quality, step_, options_);
  quality["step"] = step_;
  if (distill_) quality.update(round_fields(config_, step_));
  write_metrics(quality);
}

void TrainingRun::save() {
  summary_.last_checkpoint = checkpoint_file(run_.run_dir, step_);
  if (!writer_) return;
  TrainingState state =
      capture_training_state(model_, ema_model_, train_step_->optimizer(), device_);
  state.step = step_;
  state.config = distill_ ? student_config(config_, distill_round(config_, step_)) : config_;
  state.source = weights_source_;
  if (distill_) state.teacher = module_weights(*distill_->teacher());
  const LoaderState position = loader_->state();
  state.loader_epoch = position.epoch;
  state.loader_batch = position.batch;
  state.skipped_steps = summary_.skipped_steps;
  if (LossScaler* const scaler = train_step_->loss_scaler()) {
    state.loss_scale = scaler->state().scale;
    state.loss_scale_good_steps = scaler->state().good_steps;
  }
  if (TimestepResampler* const resampler = train_step_->timestep_resampler()) {
    state.timestep_sampler = resampler->state();
  }
  try {
    publish_checkpoint(run_.run_dir, state, options_.keep_checkpoints);
  } catch (const Error& error) {
    throw stopped_by_write_failure(error, last_good_checkpoint_);
  }
  last_good_checkpoint_ = summary_.last_checkpoint;
}

void TrainingRun::write_metrics(const nlohmann::json& line) {
  try {
    metrics_->append_line(line.dump());
    if (tensorboard_) tensorboard_->scalars(line);
  } catch (const Error& error) {
    throw stopped_by_write_failure(error, last_good_checkpoint_);
  }
}

// An interrupted run saves where it stopped; the ranks check that they ended in agreement.
void TrainingRun::finish() {
  if (summary_.interrupted) save();
  if (group_) {
    const std::string after = "after step " + std::to_string(step_);
    check_same_weights(*group_, *model_, "the model " + after);
    check_same_weights(*group_, *ema_model_, "the EMA model " + after);
    group_->barrier();  // rank 0's last checkpoint is complete when any rank returns
  }
  summary_.last_step = step_;
  log::info("stopped at step " + std::to_string(step_) + " (loss " +
            format_number(summary_.last_loss) + "); checkpoint " +
            summary_.last_checkpoint.string());
}

}  // namespace

TrainSummary train(const Config& config, const TrainRun& run) {
  return TrainingRun(config, run).run();
}

}  // namespace ddpm
