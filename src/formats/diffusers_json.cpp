// diffusers' JSON files with Python's constants; see diffusers_json.h.
#include "formats/diffusers_json.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "ddpm/error.h"

namespace ddpm {
namespace {

Error json_error(const std::filesystem::path& file, const std::string& reason) {
  return Error(ErrorKind::runtime, "'" + file.string() + "': " + reason);
}

// Outside of strings, NaN, Infinity and -Infinity become "NaN", "Infinity" and "-Infinity"
// (diffusers' DPMSolverMultistepScheduler saves "lambda_min_clipped": -Infinity).
std::string quote_python_constants(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      if (text.compare(i, std::strlen(token), token) == 0) {
        out += std::string("\"") + token + "\"";
        i += std::strlen(token) - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

}  // namespace

nlohmann::json parse_diffusers_json(std::string_view text, const std::filesystem::path& file) {
  try {
    return nlohmann::json::parse(quote_python_constants(text));
  } catch (const nlohmann::json::exception& parse_error) {
    throw json_error(file, std::string("is not valid JSON: ") + parse_error.what());
  }
}

nlohmann::json read_diffusers_json(const std::filesystem::path& file) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(file, error);
  if (error) throw json_error(file, "cannot be read (" + error.message() + ")");
  if (size > kMaxDiffusersJsonBytes) {
    throw json_error(file, "is " + std::to_string(size) + " bytes, more than the limit of " +
                               std::to_string(kMaxDiffusersJsonBytes) +
                               " for a config or shard index (kMaxDiffusersJsonBytes in "
                               "ddpm/diffusers_json.h); is it the right file?");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw json_error(file, "cannot be opened; check its permissions");
  std::stringstream text;
  text << in.rdbuf();
  return parse_diffusers_json(text.str(), file);
}

}  // namespace ddpm
