// The rounds of a distillation run; see distill_rounds.h.
#include "train/distill_rounds.h"

#include <algorithm>
#include <cstdio>

#include "base/atomic_file.h"
#include "base/log.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "train/sample_grid.h"
#include "train/training_state.h"

namespace ddpm {

int64_t distill_round(const Config& config, int64_t steps_done) {
  const int64_t rounds = distillation_rounds(config.distill);
  return std::min(rounds - 1, steps_done / config.distill.steps_per_round);
}

nlohmann::json round_fields(const Config& config, int64_t steps_done) {
  const int64_t round = distill_round(config, std::max<int64_t>(0, steps_done - 1));
  return {{"round", round + 1}, {"student_steps", student_steps_in_round(config.distill, round)}};
}

int teacher_steps_in_round(const DistillConfig& distill, int64_t round) {
  return static_cast<int>(distill.start_steps >> round);
}

Config student_config(const Config& config, int64_t round) {
  Config student = config;
  student.sample.sampler = SamplerKind::ddim;
  student.sample.steps = student_steps_in_round(config.distill, round);
  student.sample.spacing = Spacing::trailing;
  student.sample.eta = 0.0;
  student.sample.guidance = 1.0;  // a guided teacher's guidance is in the student's weights
  return student;
}

std::filesystem::path round_dir(const std::filesystem::path& run_dir, int student_steps) {
  char name[32];
  std::snprintf(name, sizeof name, "steps_%03d", student_steps);
  return run_dir / "rounds" / name;
}

void publish_student(const std::filesystem::path& run_dir, UNet& model,
                     const NoiseSchedule& schedule, const Config& student, int64_t step,
                     const std::string& source, bool grid) {
  const int steps = student.sample.steps;
  const std::filesystem::path folder = round_dir(run_dir, steps);
  std::error_code error;
  std::filesystem::create_directories(folder / "checkpoints", error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot create '" + (folder / "checkpoints").string() +
                                        "' for the round's student: " + error.message());
  }
  TrainingState state;
  state.step = step;
  state.config = student;
  state.model = state.ema = module_weights(*model);
  state.source = source;
  publish_checkpoint(folder, state, 1);
  write_file_atomically(folder / "config.json", config_to_json(student).dump(2) + "\n");
  log::info("the " + std::to_string(steps) + "-step student (step " + std::to_string(step) +
            ") is in " + folder.string());
  if (!grid) return;
  char name[32];
  std::snprintf(name, sizeof name, "round_steps_%03d.png", steps);
  try {
    write_sample_grid(model, schedule, student, run_dir / "samples" / name, step);
  } catch (const Error& grid_error) {  // a grid is for looking at: the run goes on without it
    log::warn(std::string(grid_error.what()) + "; the round's sample grid skipped");
  }
}

}  // namespace ddpm
