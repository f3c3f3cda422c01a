// Shared option handling of the subcommands; see common.h.
#include "common.h"

#include <iostream>
#include <thread>

#include <torch/torch.h>

#include "config/config_json.h"
#include "ddpm/error.h"

namespace ddpm::cli {

void add_config_options(cxxopts::Options& options) {
  options.add_options()("c,config", "JSON config file (default: the built-in defaults below)",
                        cxxopts::value<std::string>())(
      "set", "override one config key, e.g. --set train.lr=1e-4 (repeatable)",
      cxxopts::value<std::vector<std::string>>());
}

void add_common_options(cxxopts::Options& options) {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  options.add_options()("threads", "CPU threads for LibTorch",
                        cxxopts::value<int>()->default_value(std::to_string(cores)))(
      "h,help", "print this help");
}

cxxopts::ParseResult parse_arguments(cxxopts::Options& options, int argc, char** argv) {
  try {
    auto result = options.parse(argc, argv);
    if (!result.unmatched().empty()) {
      throw Error(ErrorKind::usage, "unexpected argument '" + result.unmatched().front() +
                                        "'; see " + options.program() + " --help");
    }
    return result;
  } catch (const cxxopts::exceptions::exception& error) {
    throw Error(ErrorKind::usage, std::string(error.what()) + "; see " + options.program() +
                                      " --help");
  }
}

std::string help_text(const cxxopts::Options& options, bool with_config_keys) {
  std::string text = options.help();
  if (with_config_keys) {
    text += "\nConfig keys and their defaults (set them in the JSON file or with --set):\n" +
            config_defaults_text();
  }
  return text;
}

Config config_from_arguments(const cxxopts::ParseResult& arguments) {
  std::vector<std::string> overrides;
  if (arguments.count("set")) overrides = arguments["set"].as<std::vector<std::string>>();
  if (arguments.count("config")) {
    return load_config(arguments["config"].as<std::string>(), overrides);
  }
  return default_config(overrides);
}

void apply_threads(const cxxopts::ParseResult& arguments) {
  const int threads = arguments["threads"].as<int>();
  if (threads < 1) {
    throw Error(ErrorKind::usage, "--threads must be >= 1, got " + std::to_string(threads));
  }
  torch::set_num_threads(threads);
}

std::optional<cxxopts::ParseResult> parse_command(cxxopts::Options& options, int argc, char** argv,
                                                  bool with_config_keys) {
  add_common_options(options);
  auto arguments = parse_arguments(options, argc, argv);
  if (arguments.count("help")) {
    std::cout << help_text(options, with_config_keys);
    return std::nullopt;
  }
  apply_threads(arguments);
  return arguments;
}

void refuse_existing(const std::filesystem::path& file, bool overwrite) {
  std::error_code error;
  if (std::filesystem::exists(file, error) && !overwrite) {
    throw Error(ErrorKind::usage, "'" + file.string() +
                                      "' exists; pass --overwrite to replace it, or choose "
                                      "another path");
  }
}

void make_folder_of(const std::filesystem::path& file) {
  std::error_code error;
  if (!file.parent_path().empty()) std::filesystem::create_directories(file.parent_path(), error);
  if (error) {
    throw Error(ErrorKind::runtime,
                "cannot create '" + file.parent_path().string() + "': " + error.message());
  }
}

}  // namespace ddpm::cli
