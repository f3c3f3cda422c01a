// The reader of one diffusers config object; see diffusers_fields.h.
#include "interop/diffusers_fields.h"

#include <cstdint>

#include "ddpm/error.h"

namespace ddpm {

using nlohmann::json;

DiffusersFields::DiffusersFields(const json& object, std::string file)
    : reader_(object, file), file_(std::move(file)) {}

json DiffusersFields::get(const std::string& key, const json& fallback) {
  const json* value = reader_.find(key);
  return value ? *value : fallback;
}

void DiffusersFields::refuse(const std::string& key, const json& value,
                             const std::string& supported) const {
  throw Error(ErrorKind::config,
              file_ + ": field '" + key + "' is " + value.dump() + "; ddpm supports " + supported);
}

void DiffusersFields::require(const std::string& key, const json& fallback,
                              const json& supported, const std::string& what) {
  const json value = get(key, fallback);
  if (value != supported) refuse(key, value, what.empty() ? supported.dump() + " only" : what);
}

std::string DiffusersFields::text(const std::string& key, const std::string& fallback) {
  const json value = get(key, fallback);
  if (!value.is_string()) refuse(key, value, "text");
  return value.get<std::string>();
}

bool DiffusersFields::boolean(const std::string& key, bool fallback) {
  const json value = get(key, fallback);
  if (!value.is_boolean()) refuse(key, value, "true or false");
  return value.get<bool>();
}

double DiffusersFields::number(const std::string& key, double fallback) {
  const json value = get(key, fallback);
  if (!value.is_number()) refuse(key, value, "a number");
  return value.get<double>();
}

int DiffusersFields::integer(const std::string& key, int fallback, int minimum) {
  const json value = get(key, fallback);
  if (!value.is_number_integer() || value.get<int64_t>() < minimum ||
      value.get<int64_t>() > 1'000'000'000) {
    refuse(key, value, "an integer >= " + std::to_string(minimum));
  }
  return value.get<int>();
}

std::vector<int> DiffusersFields::integer_list(const std::string& key, const json& fallback) {
  const json value = get(key, fallback);
  std::vector<int> result;
  if (value.is_array()) {
    for (const json& element : value) {
      if (!element.is_number_integer() || element.get<int64_t>() < 1 ||
          element.get<int64_t>() > 1'000'000) {
        result.clear();
        break;
      }
      result.push_back(element.get<int>());
    }
  }
  if (result.empty()) refuse(key, value, "a list of positive integers");
  return result;
}

std::vector<std::string> DiffusersFields::text_list(const std::string& key, const json& fallback) {
  const json value = get(key, fallback);
  std::vector<std::string> result;
  if (value.is_array()) {
    for (const json& element : value) {
      if (!element.is_string()) {
        result.clear();
        break;
      }
      result.push_back(element.get<std::string>());
    }
  }
  if (result.empty()) refuse(key, value, "a list of block type names");
  return result;
}

std::vector<std::string> DiffusersFields::unread() const {
  std::vector<std::string> keys = reader_.unread_keys();
  std::erase_if(keys, [](const std::string& key) { return key.starts_with("_"); });
  return keys;
}

}  // namespace ddpm
