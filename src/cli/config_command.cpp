// `ddpm config`: validate a config and print it fully resolved, as JSON.
#include <iostream>

#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "interop/model_source.h"

namespace ddpm::cli {

int run_config(int argc, char** argv) {
  cxxopts::Options options("ddpm config",
                           "Validates a config and prints it resolved (every key, defaults "
                           "filled in, overrides applied) as JSON on standard output. With "
                           "--checkpoint, the config of a checkpoint, run directory or diffusers "
                           "folder (a starting point for fine-tuning it).");
  add_config_options(options);
  options.add_options()("checkpoint",
                        "print the config of this checkpoint, run directory or diffusers folder",
                        cxxopts::value<std::string>());
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("checkpoint")) {
    std::cout << config_to_json(config_from_arguments(arguments)).dump(2) << "\n";
    return 0;
  }
  if (arguments.count("config")) {
    throw Error(ErrorKind::usage, "pass --config or --checkpoint, not both");
  }
  const ModelSource source = load_model_source(arguments["checkpoint"].as<std::string>());
  for (const auto& warning : source.warnings) log::warn(warning);
  Config config = source.config;
  if (arguments.count("set")) {
    for (const auto& assignment : arguments["set"].as<std::vector<std::string>>()) {
      apply_override(config, assignment);
    }
    validate(config);
  }
  std::cout << config_to_json(config).dump(2) << "\n";
  return 0;
}

}  // namespace ddpm::cli
