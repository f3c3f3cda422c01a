// The rounds of a distillation run (`ddpm distill`): which round a step belongs to, the config
// its student is sampled with, and where each round's student is published.
//
// Round r (0-based) runs steps r x steps_per_round + 1 .. (r + 1) x steps_per_round with a
// teacher of start_steps >> r DDIM steps; its student takes half as many. At the end of a round
// the student (its EMA weights) is published as a checkpoint of its own,
// RUN_DIR/rounds/steps_NNN/checkpoints/, whose sample section is ddim on the student's trailing
// grid, and becomes the next round's teacher and student.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "diffusion/schedule.h"
#include "formats/checkpoint.h"
#include "model/unet.h"

namespace ddpm {

// The round that step `steps_done` + 1 belongs to; the last round once every step is done.
int64_t distill_round(const Config& config, int64_t steps_done);

// {"round": 1-based, "student_steps"} of the round whose last step done is `steps_done` (for
// the lines of metrics.jsonl).
nlohmann::json round_fields(const Config& config, int64_t steps_done);

// The teacher's and the student's DDIM steps in round `round`.
int teacher_steps_in_round(const DistillConfig& distill, int64_t round);
inline int student_steps_in_round(const DistillConfig& distill, int64_t round) {
  return teacher_steps_in_round(distill, round) / 2;
}

// `config` with the sample section of round `round`'s student: ddim, eta 0, trailing spacing,
// its number of steps.
Config student_config(const Config& config, int64_t round);

// RUN_DIR/rounds/steps_008 for a student of 8 steps.
std::filesystem::path round_dir(const std::filesystem::path& run_dir, int student_steps);

// Writes the student `model` (as its model and EMA weights, with `student`, its student_config,
// and `source`) as the checkpoint of its round folder, with `latest` and the folder's
// config.json, and with `grid` a sample grid of it to RUN_DIR/samples/round_steps_NNN.png.
// Throws ddpm::Error (runtime) when the checkpoint cannot be written (a grid that cannot is
// skipped with a warning).
void publish_student(const std::filesystem::path& run_dir, UNet& model,
                     const NoiseSchedule& schedule, const Config& student, int64_t step,
                     const std::string& source, bool grid);

}  // namespace ddpm
