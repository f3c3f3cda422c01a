// ddpm::train_model (ddpm.h): a training run from C++, resolved as `ddpm train` resolves it
// (train_setup.h) and run by the same train(); `ddpm train` itself runs through here.
#include "base/log.h"
#include "ddpm/ddpm.h"
#include "distributed/distributed_env.h"
#include "train/distill_setup.h"
#include "train/train_setup.h"
#include "train/trainer.h"

namespace ddpm {

TrainReport train_model(const TrainRequest& request) {
  if (request.run_dir.empty()) {
    throw Error(ErrorKind::usage, "TrainRequest::run_dir is empty: name the run directory");
  }
  if (request.distill && !request.init_from.empty()) {
    throw Error(ErrorKind::usage, "a distillation starts from its teacher; drop --init-from");
  }
  const TrainSetup setup =
      request.distill
          ? prepare_distillation(request.teacher, request.config_file, request.overrides,
                                 request.data, request.run_dir, request.resume)
          : prepare_training(request.config_file, request.overrides, request.data,
                             request.run_dir, request.resume, request.init_from);
  TrainRun run;
  run.run_dir = request.run_dir;
  run.resume = request.resume;
  run.command_line =
      request.command_line.empty() ? "ddpm::train_model (C++ API)" : request.command_line;
  run.stop_requested = request.stop;
  if (request.launcher_environment) {
    run.distributed = read_distributed_env();
    log::set_rank(run.distributed.rank);
  }
  attach_init_weights(setup, run);
  const int rank = run.distributed.rank;
  const int64_t log_every = setup.config.train.log_every;
  if (request.on_step) {
    run.on_progress = [&](const TrainProgress& progress) {
      request.on_step({progress.step, progress.total, progress.first_step, log_every, rank,
                       progress.loss, progress.lr, progress.images_per_second,
                       progress.elapsed_seconds});
    };
  }
  const TrainSummary summary = train(setup.config, run);
  return {summary.first_step,   summary.last_step,     summary.interrupted,
          summary.last_loss,    summary.skipped_steps, summary.last_checkpoint.string(),
          rank};
}

}  // namespace ddpm
