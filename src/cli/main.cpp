// `ddpm`: dispatches to a subcommand, and turns every error into a message and an exit code
// (2 usage or config, 1 runtime failure, 130 interrupted).
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <vector>

#include "base/log.h"
#include "base/suggest.h"
#include "commands.h"
#include "ddpm/ddpm.h"
#include "ddpm/error.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"train", "train a model on an image folder (resumable)", ddpm::cli::run_train},
      {"sample", "sample images from a checkpoint and write PNGs", ddpm::cli::run_sample},
      {"invert", "map images to the x_T that DDIM generates them from", ddpm::cli::run_invert},
      {"interpolate", "frames between two images, through their inverted x_T",
       ddpm::cli::run_interpolate},
      {"import", "turn a diffusers model folder into a ddpm checkpoint", ddpm::cli::run_import},
      {"export", "write a checkpoint as a diffusers DDPMPipeline folder", ddpm::cli::run_export},
      {"eval", "FID, KID and precision/recall of generated images against real ones",
       ddpm::cli::run_eval},
      {"distill", "distil a model to a few sampling steps (progressive distillation)",
       ddpm::cli::run_distill},
      {"compile", "compile a checkpoint ahead of time into a .pt2 package (AOTInductor)",
       ddpm::cli::run_compile},
      {"nll", "the variational bound of images in bits per dimension", ddpm::cli::run_nll},
      {"bench", "measure training and sampling throughput, memory and FLOP utilisation",
       ddpm::cli::run_bench},
      {"info", "print a config's model (parameters, GFLOPs, memory) and noise schedule",
       ddpm::cli::run_info},
      {"config", "validate a config and print it resolved, as JSON", ddpm::cli::run_config},
  };
  return table;
}

void print_usage(std::ostream& out) {
  out << "ddpm " DDPM_VERSION " - denoising diffusion probabilistic models on LibTorch\n\n"
      << "Usage: ddpm <command> [options]\n       ddpm <command> --help\n\nCommands:\n";
  size_t width = 0;
  for (const auto& command : commands()) width = std::max(width, std::strlen(command.name));
  for (const auto& command : commands()) {
    out << "  " << command.name << std::string(width + 2 - std::strlen(command.name), ' ')
        << command.summary << "\n";
  }
  out << "\nOptions:\n  -h, --help     print this help\n  --version      print the version\n";
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::cout << "ddpm " << ddpm::version() << "\n";
    return 0;
  }
  std::vector<std::string> names;
  for (const auto& command : commands()) {
    if (name == command.name) return command.run(argc - 1, argv + 1);
    names.push_back(command.name);
  }
  throw ddpm::Error(ddpm::ErrorKind::usage,
                    "unknown command '" + name + "'; " + ddpm::suggestion_text(name, names) +
                        " (see ddpm --help)");
}

}  // namespace

int main(int argc, char** argv) {
  ddpm::log::setup();
  try {
    return dispatch(argc, argv);
  } catch (const ddpm::Error& error) {
    ddpm::log::error(error.what());
    return error.exit_code();
  } catch (const c10::Error& error) {
    ddpm::log::error(error.what_without_backtrace());
    return 1;
  } catch (const std::exception& error) {
    ddpm::log::error(error.what());
    return 1;
  }
}
