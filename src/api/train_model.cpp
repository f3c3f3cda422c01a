// ddpm::train_model (ddpm.h): a training run from C++, resolved as `ddpm train` resolves it
// (train_setup.h) and run by the same train().
#include "ddpm/ddpm.h"
#include "ddpm/train_setup.h"
#include "ddpm/trainer.h"

namespace ddpm {

TrainReport train_model(const TrainRequest& request) {
  if (request.run_dir.empty()) {
    throw Error(ErrorKind::usage, "TrainRequest::run_dir is empty: name the run directory");
  }
  const TrainSetup setup = prepare_training(request.config_file, request.overrides, request.data,
                                            request.run_dir, request.resume, request.init_from);
  TrainRun run;
  run.run_dir = request.run_dir;
  run.resume = request.resume;
  run.command_line = "ddpm::train_model (C++ API)";
  run.stop_requested = request.stop;
  attach_init_weights(setup, run);
  if (request.on_step) {
    run.on_progress = [&](const TrainProgress& progress) {
      request.on_step({progress.step, progress.total, progress.loss, progress.lr,
                       progress.images_per_second, progress.elapsed_seconds});
    };
  }
  const TrainSummary summary = train(setup.config, run);
  return {summary.first_step,   summary.last_step,     summary.interrupted,
          summary.last_loss,    summary.skipped_steps, summary.last_checkpoint.string()};
}

}  // namespace ddpm
