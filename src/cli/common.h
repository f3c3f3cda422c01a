// What every subcommand shares: option parsing, --config/--set, --threads, --help texts.
#pragma once

// `--set` values may contain commas (model.channel_mult=[1,2,2]): never split them.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "config/config.h"

namespace ddpm::cli {

// --config FILE and --set KEY=VALUE (repeatable).
void add_config_options(cxxopts::Options& options);
// --threads N and --help.
void add_common_options(cxxopts::Options& options);

// Parses the command's arguments; a bad option is a usage error (exit 2) naming it.
cxxopts::ParseResult parse_arguments(cxxopts::Options& options, int argc, char** argv);

// The help text; with the config keys and their defaults when the command takes a config.
std::string help_text(const cxxopts::Options& options, bool with_config_keys);

// The config from --config (or the defaults) with every --set applied, validated.
Config config_from_arguments(const cxxopts::ParseResult& arguments);

// Sets LibTorch's intra-op threads from --threads (default: every core).
void apply_threads(const cxxopts::ParseResult& arguments);

// What every subcommand does first: adds --threads and --help, parses, applies --threads. With
// --help it prints the help text (with the config keys when `with_config_keys`) and returns
// nothing: the command then exits 0.
std::optional<cxxopts::ParseResult> parse_command(cxxopts::Options& options, int argc, char** argv,
                                                  bool with_config_keys);

// Throws ddpm::Error (usage) when `file` exists and --overwrite was not given.
void refuse_existing(const std::filesystem::path& file, bool overwrite);

// Creates the folder of an output file (once every check has passed). Throws ddpm::Error
// (runtime) naming it when it cannot.
void make_folder_of(const std::filesystem::path& file);

}  // namespace ddpm::cli
