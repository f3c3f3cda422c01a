// `ddpm distill`: progressive distillation of a teacher into students of ever fewer DDIM steps;
// resumable and stoppable as `ddpm train` is (it runs through the same training loop).
#include <sstream>

#include "commands.h"
#include "common.h"
#include "ddpm/error.h"

namespace ddpm::cli {

int run_distill(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm distill",
      "Progressive distillation (Salimans & Ho 2022): a student learns to take one DDIM step "
      "where its teacher takes two, round after round, from distill.start_steps / 2 steps down "
      "to distill.end_steps. The config is the teacher's, with the keys of --config (its "
      "distill and train sections: optimiser, EMA, batch, precision, ...) and --set laid over "
      "it; train.steps is rounds x distill.steps_per_round. RUN_DIR gets what ddpm train "
      "writes, plus rounds/steps_NNN/ (each round's student, a checkpoint whose sample section "
      "is its ddim grid: ddpm sample --checkpoint RUN_DIR/rounds/steps_004); RUN_DIR itself "
      "samples as the last student. Several processes distil together under torchrun or srun, "
      "as in ddpm train. docs/DISTILLATION.md");
  add_config_options(options);
  options.add_options()(
      "teacher", "the model to distil: a checkpoint (its EMA weights), a run directory or a "
                 "diffusers folder (not needed with --resume)",
      cxxopts::value<std::string>())("data", "the image folder to distil on (overrides data.path)",
                                     cxxopts::value<std::string>())(
      "o,out", "run directory (required)", cxxopts::value<std::string>())(
      "resume", "continue the run in --out from its latest checkpoint, mid-round too")(
      "guidance", "a class-conditional teacher's classifier-free guidance (distill.guidance): "
                  "the student learns the guided steps and samples with one pass per step",
      cxxopts::value<double>());
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("out")) {
    throw Error(ErrorKind::usage, "ddpm distill needs --out RUN_DIR (where the rounds' students "
                                  "and checkpoints go)");
  }
  const auto text = [&](const char* flag) {
    return arguments.count(flag) ? arguments[flag].as<std::string>() : std::string();
  };
  TrainRequest request;
  request.distill = true;
  request.teacher = text("teacher");
  request.config_file = text("config");
  if (arguments.count("set")) request.overrides = arguments["set"].as<std::vector<std::string>>();
  if (arguments.count("guidance")) {
    std::ostringstream value;
    value.precision(17);
    value << arguments["guidance"].as<double>();
    request.overrides.push_back("distill.guidance=" + value.str());
  }
  request.data = text("data");
  request.run_dir = text("out");
  request.resume = arguments.count("resume") > 0;
  request.command_line = command_line(argc, argv);
  return run_training_request(request, request.run_dir, "distill");
}

}  // namespace ddpm::cli
