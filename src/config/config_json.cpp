// Strict JSON reading and complete JSON writing of Config, plus --set overrides.
#include "config/config_json.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>

#include "base/suggest.h"
#include "config/config_fields.h"
#include "config/json_object_reader.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

using nlohmann::json;

// Reads one section's keys (config_fields.h) through the strict ObjectReader.
class FieldReader {
 public:
  FieldReader(const json& object, const std::string& section)
      : reader_(object, section), section_(section) {}

  template <typename Field>
  void operator()(const char* key, Field& field) {
    if constexpr (std::is_enum_v<Field>) {
      std::string name = choice_name(field);
      reader_.read(key, name);
      field = choice_from_name<Field>(name, section_ + "." + key);
    } else {
      reader_.read(key, field);
    }
  }
  void operator()(const char* key, ImageSizeField<int> size) {
    reader_.read_image_size(key, size.height, size.width);
  }
  void finish() const { reader_.finish(); }

 private:
  ObjectReader reader_;
  std::string section_;
};

// Writes one section's keys, every one of them.
class FieldWriter {
 public:
  explicit FieldWriter(json& object) : object_(object) {}

  template <typename Field>
  void operator()(const char* key, const Field& field) {
    if constexpr (std::is_enum_v<Field>) {
      object_[key] = choice_name(field);
    } else {
      object_[key] = field;
    }
  }
  void operator()(const char* key, ImageSizeField<const int> size) {
    object_[key] =
        size.height == size.width ? json(size.height) : json::array({size.height, size.width});
  }

 private:
  json& object_;
};

const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> in_order;
    const Config defaults;
    visit_sections(defaults, [&](const char* name, const auto&) { in_order.push_back(name); });
    return in_order;
  }();
  return names;
}

// `size`: "20000000 bytes, " when known.
Error config_too_large(const std::filesystem::path& file, const std::string& size) {
  return Error(ErrorKind::config,
               "config file '" + file.string() + "' is " + size + "more than the limit of " +
                   std::to_string(kMaxConfigBytes) +
                   " bytes for a config (kMaxConfigBytes in ddpm/config_json.h); a config is a "
                   "few KB: check that this is the config file");
}

// The whole file, refused before it is read when it is longer than a config can be; pipes,
// whose size is unknown, are read up to the limit.
std::string read_config_text(const std::filesystem::path& file) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(file, error);
  if (!error && size > kMaxConfigBytes) {
    throw config_too_large(file, std::to_string(size) + " bytes, ");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::config, "config file '" + file.string() + "' cannot be read");
  }
  std::string text;
  char chunk[1 << 16];
  while (in.read(chunk, sizeof chunk) || in.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) throw config_too_large(file, "");
  }
  return text;
}

json parse_file(const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::exists(file, error)) {
    throw Error(ErrorKind::config, "config file '" + file.string() +
                                       "' does not exist; pass an existing JSON file, e.g. "
                                       "configs/tiny.json");
  }
  if (std::filesystem::is_directory(file, error)) {
    throw Error(ErrorKind::config, "config file '" + file.string() + "' is a folder, not a file");
  }
  const std::string text = read_config_text(file);
  try {
    return json::parse(text, nullptr, true, /*ignore_comments=*/false);
  } catch (const json::exception& parse_error) {  // also out_of_range: a number like 1e400
    throw Error(ErrorKind::config,
                "config file '" + file.string() + "' is not valid JSON: " + parse_error.what());
  }
}

}  // namespace

Config config_from_json(const json& root) {
  if (!root.is_object()) {
    throw Error(ErrorKind::config, "a config must be a JSON object with the sections data, "
                                   "model, diffusion, train and sample; got " +
                                       json_type_name(root));
  }
  for (const auto& item : root.items()) {
    const auto& names = section_names();
    if (std::find(names.begin(), names.end(), item.key()) == names.end()) {
      throw config_error(item.key(), "unknown section; " + suggestion_text(item.key(), names));
    }
  }
  Config config;
  const json empty = json::object();
  visit_sections(config, [&](const char* name, auto& section) {
    FieldReader reader(root.contains(name) ? root.at(name) : empty, name);
    visit_fields(section, reader);
    reader.finish();
  });
  // A learned-variance model samples with its variances unless its config says otherwise.
  const bool variance_named = root.contains("sample") && root.at("sample").is_object() &&
                              root.at("sample").contains("variance");
  if (config.model.learn_variance && !variance_named) config.sample.variance = Variance::learned;
  validate(config);
  return config;
}

json config_to_json(const Config& config) {
  json root = json::object();
  visit_sections(config, [&](const char* name, const auto& section) {
    json& object = root[name] = json::object();
    visit_fields(section, FieldWriter(object));
  });
  return root;
}

namespace {

// One "section.key=value" assignment of --set, its value read as JSON when it parses.
struct Assignment {
  std::string section, key;
  json value;
};

Assignment parse_assignment(const std::string& assignment) {
  const auto equals = assignment.find('=');
  const std::string key_path = assignment.substr(0, equals);
  const auto dot = key_path.find('.');
  if (equals == std::string::npos || dot == std::string::npos || dot == 0 ||
      dot + 1 == key_path.size() || key_path.find('.', dot + 1) != std::string::npos) {
    throw Error(ErrorKind::usage, "--set '" + assignment +
                                      "': expected section.key=value, e.g. --set train.lr=1e-4");
  }
  const std::string text = assignment.substr(equals + 1);
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    value = text;  // bare words such as cosine or /data/images
    try {
      value.dump();  // the config is written out as JSON, which holds UTF-8 text only
    } catch (const json::type_error&) {
      throw Error(ErrorKind::usage, "--set '" + key_path +
                                        "=...': the value is not valid UTF-8 text; check its "
                                        "quoting and the terminal's encoding");
    }
  }
  return {key_path.substr(0, dot), key_path.substr(dot + 1), std::move(value)};
}

}  // namespace

void apply_override(json& root, const std::string& assignment) {
  Assignment parsed = parse_assignment(assignment);
  if (!root.is_object()) root = json::object();
  json& target = root[parsed.section];
  if (target.is_null()) target = json::object();
  if (!target.is_object()) {
    throw config_error(parsed.section, "expected an object, got " + json_type_name(target));
  }
  target[parsed.key] = std::move(parsed.value);
}

void apply_override(Config& config, const std::string& assignment) {
  const Assignment parsed = parse_assignment(assignment);
  const auto& names = section_names();
  if (std::find(names.begin(), names.end(), parsed.section) == names.end()) {
    throw config_error(parsed.section,
                       "unknown section; " + suggestion_text(parsed.section, names));
  }
  const json object = {{parsed.key, parsed.value}};
  visit_sections(config, [&](const char* name, auto& section) {
    if (parsed.section != name) return;
    FieldReader reader(object, name);
    visit_fields(section, reader);
    reader.finish();  // an unknown key, with a did-you-mean hint
  });
}

json read_config_file(const std::filesystem::path& file) {
  json root = parse_file(file);
  // Paths written in the file are relative to it (those of --set to the current folder).
  const auto resolve = [&](const char* section, const char* key) {
    if (!root.is_object() || !root.contains(section) || !root[section].is_object() ||
        !root[section].contains(key) || !root[section][key].is_string()) {
      return;
    }
    const std::filesystem::path path = root[section][key].get<std::string>();
    if (!path.empty() && path.is_relative()) {
      const auto folder = std::filesystem::absolute(file).parent_path();
      root[section][key] = (folder / path).lexically_normal().string();
    }
  };
  resolve("data", "path");
  resolve("train", "eval_real");
  resolve("train", "eval_feature_net");
  return root;
}

Config load_config(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  json root = read_config_file(file);
  for (const auto& assignment : overrides) apply_override(root, assignment);
  try {
    return config_from_json(root);
  } catch (const Error& error) {
    throw Error(error.kind(), file.string() + ": " + error.what());
  }
}

Config default_config(const std::vector<std::string>& overrides) {
  json root = json::object();
  for (const auto& assignment : overrides) apply_override(root, assignment);
  return config_from_json(root);
}

std::string config_defaults_text() {
  std::ostringstream out;
  const json defaults = config_to_json(Config{});
  for (const auto& section : defaults.items()) {
    for (const auto& item : section.value().items()) {
      out << "  " << section.key() << "." << item.key() << " = " << item.value().dump() << "\n";
    }
  }
  return out.str();
}

}  // namespace ddpm
