// Config <-> JSON. Reading is strict: an unknown key (with a did-you-mean hint), a value of the
// wrong type or an impossible value throws ddpm::Error (config, exit code 2) naming the key path.
// Missing keys take the defaults of config.h. Writing gives every key, so a resolved config
// written back re-reads to the same Config.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace ddpm {

// A config file is a few KB; load_config refuses a longer one before reading it.
inline constexpr uintmax_t kMaxConfigBytes = uintmax_t{16} << 20;

Config config_from_json(const nlohmann::json& json);
nlohmann::json config_to_json(const Config& config);

// Applies one "section.key=value" override to a JSON config tree. The value is read as JSON
// when it parses (numbers, true/false, [lists], "quoted strings"), else taken as a string.
void apply_override(nlohmann::json& json, const std::string& assignment);
// The same on a typed config: only the assigned field changes; the key and the value's type
// are checked, the whole config is not (call validate() once all are applied).
void apply_override(Config& config, const std::string& assignment);

// A JSON config file as it is, but with its relative paths (data.path, train.eval_real,
// train.eval_feature_net) made relative to its folder; not parsed into a Config. Throws
// ddpm::Error (config) for a missing, unreadable, oversized or invalid file.
nlohmann::json read_config_file(const std::filesystem::path& file);

// Reads a JSON config file, applies the overrides in order, parses and validates.
// A relative data.path in the file is taken relative to the file's folder.
Config load_config(const std::filesystem::path& file, const std::vector<std::string>& overrides);

// The defaults with the same overrides (for commands run without a config file).
Config default_config(const std::vector<std::string>& overrides);

// One line per key, "  section.key = default", for --help texts.
std::string config_defaults_text();

}  // namespace ddpm
