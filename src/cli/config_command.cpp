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
  add_common_options(options);
  const auto arguments = parse_arguments(options, argc, argv);
  if (arguments.count("help")) {
    std::cout << help_text(options, true);
    return 0;
  }
  std::cout << config_to_json(config_from_arguments(arguments)).dump(2) << "\n";
  return 0;
}

}  // namespace ddpm::cli
