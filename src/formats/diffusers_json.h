// The JSON files of a diffusers folder (config.json, scheduler_config.json, model_index.json,
// shard indexes) as Python's json module writes them: with NaN, Infinity and -Infinity, which
// standard JSON lacks, read as the strings "NaN", "Infinity" and "-Infinity" (a field that must
// be a number is then refused by name, and the others parse).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ddpm {

// Configs and shard indexes are a few KB; a longer file is refused before it is read.
inline constexpr uintmax_t kMaxDiffusersJsonBytes = uintmax_t{64} << 20;

// Throws ddpm::Error (runtime) naming `file` for text that is not JSON.
nlohmann::json parse_diffusers_json(std::string_view text, const std::filesystem::path& file);

// The file parsed as above; also throws for a missing, unreadable or too long file.
nlohmann::json read_diffusers_json(const std::filesystem::path& file);

}  // namespace ddpm
