// `ddpm config`: validate a config and print it fully resolved, as JSON.
#include <iostream>

#include "commands.h"
#include "common.h"
#include "ddpm/config_json.h"

namespace ddpm::cli {

int run_config(int argc, char** argv) {
  cxxopts::Options options("ddpm config",
                           "Validates a config and prints it resolved (every key, defaults "
                           "filled in, overrides applied) as JSON on standard output.");
  add_config_options(options);
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  std::cout << config_to_json(config_from_arguments(arguments)).dump(2) << "\n";
  return 0;
}

}  // namespace ddpm::cli
