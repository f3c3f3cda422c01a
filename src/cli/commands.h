// The subcommands of `ddpm`; each parses its own arguments and returns the exit code.
#pragma once

#include <filesystem>
#include <string>

#include "ddpm/ddpm.h"

namespace ddpm::cli {

int run_info(int argc, char** argv);
int run_config(int argc, char** argv);
int run_train(int argc, char** argv);
int run_sample(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_import(int argc, char** argv);
int run_export(int argc, char** argv);
int run_invert(int argc, char** argv);
int run_interpolate(int argc, char** argv);
int run_nll(int argc, char** argv);
int run_distill(int argc, char** argv);
int run_compile(int argc, char** argv);

// "ddpm <the arguments>", for run_dir/command.txt.
std::string command_line(int argc, char** argv);

// Runs a training or distillation request as `ddpm train` does: Ctrl-C / SIGTERM stop it after
// the step with a checkpoint, a progress bar, the exit code (130 when stopped; the message names
// `ddpm <command> --out RUN_DIR --resume`).
int run_training_request(TrainRequest& request, const std::filesystem::path& run_dir,
                         const std::string& command);

}  // namespace ddpm::cli
