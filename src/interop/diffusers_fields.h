// The reader of one diffusers config object (a UNet2DModel's or a scheduler's config.json):
// fields with diffusers' defaults, read through the strict object reader (json_object_reader.h)
// that remembers what was asked for, so that the rest can be reported; what ddpm cannot run is
// refused naming the file, the field, its value and what ddpm supports.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/json_object_reader.h"

namespace ddpm {

class DiffusersFields {
 public:
  DiffusersFields(const nlohmann::json& object, std::string file);

  // The field, or `fallback` (diffusers' default) when absent. null stays null.
  nlohmann::json get(const std::string& key, const nlohmann::json& fallback);

  // Throws ddpm::Error (config): "<file>: field '<key>' is <value>; ddpm supports <supported>".
  [[noreturn]] void refuse(const std::string& key, const nlohmann::json& value,
                           const std::string& supported) const;

  // A field that must have one value for ddpm to run the model.
  void require(const std::string& key, const nlohmann::json& fallback,
               const nlohmann::json& supported, const std::string& what = "");

  std::string text(const std::string& key, const std::string& fallback);
  bool boolean(const std::string& key, bool fallback);
  double number(const std::string& key, double fallback);
  int integer(const std::string& key, int fallback, int minimum);
  // A non-empty list of positive integers, or of strings.
  std::vector<int> integer_list(const std::string& key, const nlohmann::json& fallback);
  std::vector<std::string> text_list(const std::string& key, const nlohmann::json& fallback);

  // Fields that are neither read nor private ("_class_name", ...).
  std::vector<std::string> unread() const;

  const std::string& file() const { return file_; }

 private:
  ObjectReader reader_;
  std::string file_;
};

}  // namespace ddpm
