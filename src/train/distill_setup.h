// What a distillation run (`ddpm distill`, ddpm::train_model with TrainRequest::teacher) starts
// from: the teacher's weights and its config, with the distill and train keys of a config file
// and the overrides laid over it key by key, train.steps set to rounds x steps_per_round, and
// the sample section of the first round's student.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "train/train_setup.h"

namespace ddpm {

// `teacher`: a checkpoint, a run directory or a diffusers folder (not needed to resume: the
// checkpoints hold the round's teacher). `config_file` ("" for none): its sections' keys replace
// the teacher config's one by one; the model section must stay the teacher's. Without
// distill.start_steps, a distilled student starts from its own steps, any other teacher from
// 128 (or the largest power of two <= T). Throws ddpm::Error (usage or config) naming what is
// missing or does not fit.
TrainSetup prepare_distillation(const std::string& teacher, const std::string& config_file,
                                std::vector<std::string> overrides, const std::string& data,
                                const std::filesystem::path& run_dir, bool resume);

}  // namespace ddpm
