// The strict reader of one JSON object into typed fields: a value of the wrong type, out of
// range, or a key no read asked for (with a did-you-mean hint) throws ddpm::Error (config)
// naming the key path. Every JSON config section is read through it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ddpm {

// "an integer", "a string", ...: a JSON value's type, for error messages.
std::string json_type_name(const nlohmann::json& value);

// Reads the keys of one JSON object into typed fields and remembers which keys it knows, so
// that anything left over is reported as unknown. An absent key leaves its field as it is.
class ObjectReader {
 public:
  // `path`: the object's key path ("train"; "" for the root). Throws unless it is an object.
  ObjectReader(const nlohmann::json& object, std::string path);

  void read(const std::string& key, int& out);
  void read(const std::string& key, int64_t& out);
  void read(const std::string& key, uint64_t& out);
  void read(const std::string& key, double& out);
  void read(const std::string& key, bool& out);
  void read(const std::string& key, std::string& out);
  void read(const std::string& key, std::vector<int>& out);
  void read(const std::string& key, std::vector<double>& out);
  void read(const std::string& key, std::vector<std::string>& out);
  // `data.image_size`: one integer for a square image, or [height, width].
  void read_image_size(const std::string& key, int& height, int& width);

  // Any key that no read call asked for is unknown.
  void finish() const;

  // The raw value of `key` (nullptr when absent), marked as asked for: for readers of foreign
  // formats (diffusers' configs) that apply their own defaults and messages.
  const nlohmann::json* find(const std::string& key);
  // The keys present that no read or find asked for, in the object's order.
  std::vector<std::string> unread_keys() const;

 private:
  template <typename Integer>
  void read_integer(const std::string& key, Integer& out);
  // A list whose every element `accepts`; `what` names the elements in messages ("integers").
  template <typename Element>
  void read_list(const std::string& key, std::vector<Element>& out, const std::string& what,
                 const std::function<bool(const nlohmann::json&)>& accepts);
  std::string key_path(const std::string& key) const;

  const nlohmann::json& object_;
  std::string path_;
  std::vector<std::string> known_;
};

}  // namespace ddpm
