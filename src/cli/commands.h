// The subcommands of `ddpm`; each parses its own arguments and returns the exit code.
#pragma once

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

}  // namespace ddpm::cli
