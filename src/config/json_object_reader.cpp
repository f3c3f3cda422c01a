// The strict JSON object reader; see json_object_reader.h.
#include "config/json_object_reader.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <type_traits>

#include "base/suggest.h"
#include "ddpm/error.h"

namespace ddpm {

using nlohmann::json;

std::string json_type_name(const json& value) {
  if (value.is_number_integer()) return "an integer";
  if (value.is_number_float()) return "a number with a fraction";
  return std::string("a ") + value.type_name();
}

ObjectReader::ObjectReader(const json& object, std::string path)
    : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) {
    throw config_error(path_, "expected an object, got " + json_type_name(object_));
  }
}

template <typename Integer>
void ObjectReader::read_integer(const std::string& key, Integer& out) {
  const json* value = find(key);
  if (!value) return;
  if (!value->is_number_integer()) {
    throw config_error(key_path(key), "expected an integer, got " + json_type_name(*value));
  }
  bool fits = false;
  if (value->is_number_unsigned()) {
    fits = value->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<Integer>::max());
  } else if constexpr (std::is_signed_v<Integer>) {
    const int64_t number = value->get<int64_t>();
    fits = number >= std::numeric_limits<Integer>::min() &&
           number <= std::numeric_limits<Integer>::max();
  }
  if (!fits) {
    throw config_error(key_path(key), "integer " + value->dump() + " is out of range (" +
                                          std::to_string(std::numeric_limits<Integer>::min()) +
                                          " to " +
                                          std::to_string(std::numeric_limits<Integer>::max()) +
                                          ")");
  }
  out = value->get<Integer>();
}

void ObjectReader::read(const std::string& key, int& out) { read_integer(key, out); }

void ObjectReader::read(const std::string& key, int64_t& out) { read_integer(key, out); }

void ObjectReader::read(const std::string& key, uint64_t& out) { read_integer(key, out); }

void ObjectReader::read(const std::string& key, double& out) {
  const json* value = find(key);
  if (!value) return;
  if (!value->is_number()) {
    throw config_error(key_path(key), "expected a number, got " + json_type_name(*value));
  }
  out = value->get<double>();
}

void ObjectReader::read(const std::string& key, bool& out) {
  const json* value = find(key);
  if (!value) return;
  if (!value->is_boolean()) {
    throw config_error(key_path(key), "expected true or false, got " + json_type_name(*value));
  }
  out = value->get<bool>();
}

void ObjectReader::read(const std::string& key, std::string& out) {
  const json* value = find(key);
  if (!value) return;
  if (!value->is_string()) {
    throw config_error(key_path(key), "expected a string, got " + json_type_name(*value));
  }
  out = value->get<std::string>();
}

template <typename Element>
void ObjectReader::read_list(const std::string& key, std::vector<Element>& out,
                             const std::string& what,
                             const std::function<bool(const json&)>& accepts) {
  const json* value = find(key);
  if (!value) return;
  if (!value->is_array()) {
    throw config_error(key_path(key),
                       "expected a list of " + what + ", got " + json_type_name(*value));
  }
  std::vector<Element> result;
  for (const auto& element : *value) {
    if (!accepts(element)) {
      throw config_error(key_path(key), "expected a list of " + what + ", found " + element.dump());
    }
    result.push_back(element.get<Element>());
  }
  out = std::move(result);
}

void ObjectReader::read(const std::string& key, std::vector<int>& out) {
  read_list(key, out, "integers", [](const json& element) {
    return element.is_number_integer() && element.get<int64_t>() >= INT32_MIN &&
           element.get<int64_t>() <= INT32_MAX;
  });
}

void ObjectReader::read(const std::string& key, std::vector<double>& out) {
  read_list(key, out, "numbers", [](const json& element) { return element.is_number(); });
}

void ObjectReader::read(const std::string& key, std::vector<std::string>& out) {
  read_list(key, out, "strings", [](const json& element) { return element.is_string(); });
}

void ObjectReader::read_image_size(const std::string& key, int& height, int& width) {
  const json* value = find(key);
  if (!value) return;
  if (value->is_number_integer() && value->get<int64_t>() > 0 &&
      value->get<int64_t>() <= INT32_MAX) {
    height = width = value->get<int>();
    return;
  }
  if (value->is_array() && value->size() == 2 && (*value)[0].is_number_integer() &&
      (*value)[1].is_number_integer() && (*value)[0].get<int64_t>() > 0 &&
      (*value)[1].get<int64_t>() > 0 && (*value)[0].get<int64_t>() <= INT32_MAX &&
      (*value)[1].get<int64_t>() <= INT32_MAX) {
    height = (*value)[0].get<int>();
    width = (*value)[1].get<int>();
    return;
  }
  throw config_error(key_path(key), "expected a positive integer or [height, width], got " +
                                        value->dump());
}

void ObjectReader::finish() const {
  const std::vector<std::string> unknown = unread_keys();
  if (!unknown.empty()) {
    throw config_error(key_path(unknown.front()),
                       "unknown key; " + suggestion_text(unknown.front(), known_));
  }
}

std::vector<std::string> ObjectReader::unread_keys() const {
  std::vector<std::string> keys;
  for (const auto& item : object_.items()) {
    if (std::find(known_.begin(), known_.end(), item.key()) == known_.end()) {
      keys.push_back(item.key());
    }
  }
  return keys;
}

const json* ObjectReader::find(const std::string& key) {
  known_.push_back(key);
  const auto found = object_.find(key);
  return found == object_.end() ? nullptr : &*found;
}

std::string ObjectReader::key_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

}  // namespace ddpm
