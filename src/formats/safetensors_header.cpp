// The safetensors header: length, JSON, and every check of the format; see safetensors_header.h.
#include "formats/safetensors_header.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "base/byte_order.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

using nlohmann::json;

const std::vector<std::pair<std::string, size_t>>& dtype_sizes() {
  static const std::vector<std::pair<std::string, size_t>> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  return sizes;
}

std::string dtype_list() {
  std::string text;
  for (const auto& [name, size] : dtype_sizes()) text += (text.empty() ? "" : ", ") + name;
  return text;
}

Error file_error(const std::string& file, const std::string& reason) {
  return Error(ErrorKind::runtime, "safetensors file '" + file + "': " + reason);
}

Error tensor_error(const std::string& file, const std::string& name, const std::string& reason) {
  return file_error(file, "tensor '" + printable_name(name) + "' " + reason);
}

// The JSON nests three levels at most: the header object, an entry, its shape or offsets.
constexpr int kMaxDepth = 2;

json parse_json(std::string_view header, const std::string& file) {
  // nlohmann keeps the last of duplicate keys silently: track each open object's keys.
  std::vector<std::set<std::string>> open_objects;
  const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth > kMaxDepth) throw file_error(file, "the header nests deeper than the format");
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (!open_objects.empty() && !open_objects.back().insert(key).second) {
          throw file_error(file, "the header names '" + printable_name(key) +
                                     "' twice; duplicate names are invalid");
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(header.begin(), header.end(), check);
  } catch (const json::exception& error) {
    throw file_error(file, std::string("the header is not valid JSON (") + error.what() +
                               "); the file is corrupt or not a safetensors file");
  }
}

uint64_t unsigned_value(const json& value, const std::string& file, const std::string& name,
                        const std::string& what) {
  if (!value.is_number_unsigned()) {
    throw tensor_error(file, name, "has " + what + " " + printable_name(value.dump(), 40) +
                                       "; expected a non-negative integer");
  }
  return value.get<uint64_t>();
}

SafetensorsTensorInfo read_entry(const std::string& name, const json& entry,
                                 const std::string& file) {
  if (!entry.is_object()) throw tensor_error(file, name, "is not an object");
  SafetensorsTensorInfo info;
  info.name = name;
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) {
    throw tensor_error(file, name, "has no dtype text");
  }
  info.dtype = dtype->get<std::string>();
  const size_t element_size = safetensors_dtype_size(info.dtype);
  if (element_size == 0) {
    throw tensor_error(file, name, "has the unknown dtype '" + printable_name(info.dtype) +
                                       "' (known: " + dtype_list() + ")");
  }
  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) {
    throw tensor_error(file, name, "has no shape list");
  }
  uint64_t elements = 1;
  for (const json& dimension : *shape) {
    const uint64_t size = unsigned_value(dimension, file, name, "a shape entry");
    if (size > uint64_t(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(elements, size, &elements)) {
      throw tensor_error(file, name, "has a shape whose element count overflows 64 bits");
    }
    info.shape.push_back(static_cast<int64_t>(size));
  }
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
    throw tensor_error(file, name, "has no data_offsets [begin, end]");
  }
  info.begin = unsigned_value((*offsets)[0], file, name, "a data offset");
  info.end = unsigned_value((*offsets)[1], file, name, "a data offset");
  if (info.end < info.begin) {
    throw tensor_error(file, name, "ends (" + std::to_string(info.end) + ") before it begins (" +
                                       std::to_string(info.begin) + ")");
  }
  uint64_t bytes = 0;
  const bool overflows = __builtin_mul_overflow(elements, uint64_t(element_size), &bytes);
  if (overflows || bytes != info.end - info.begin) {
    throw tensor_error(file, name, "has " + std::to_string(info.end - info.begin) +
                                       " bytes of data, but its dtype " + info.dtype +
                                       " and shape need " +
                                       (overflows ? std::string("more than 2^64")
                                                  : std::to_string(bytes)));
  }
  return info;
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& [name, size] : dtype_sizes()) {
    if (name == dtype) return size;
  }
  return 0;
}

uint64_t safetensors_header_length(std::string_view first_bytes, uint64_t file_size,
                                   const std::string& file) {
  if (file_size < 8 || first_bytes.size() < 8) {
    throw file_error(file, "has " + std::to_string(file_size) +
                               " bytes, fewer than the 8 of a safetensors header length; the "
                               "file is truncated or not a safetensors file");
  }
  const uint64_t length = read_little_endian(first_bytes, 0, 8);
  if (length > file_size - 8) {
    throw file_error(file, "states a header of " + std::to_string(length) +
                               " bytes, longer than the file (" + std::to_string(file_size) +
                               " bytes); the file is truncated or not a safetensors file");
  }
  if (length > kSafetensorsMaxHeaderBytes) {
    throw file_error(file, "states a header of " + std::to_string(length) +
                               " bytes, more than the format allows (" +
                               std::to_string(kSafetensorsMaxHeaderBytes) + ")");
  }
  return length;
}

SafetensorsHeader parse_safetensors_header(std::string_view header, uint64_t data_size,
                                           const std::string& file) {
  if (header.empty() || header.front() != '{') {
    throw file_error(file, "the header does not start with '{'; the file is corrupt or not a "
                           "safetensors file");
  }
  const json root = parse_json(header, file);
  if (!root.is_object()) throw file_error(file, "the header is not a JSON object");
  SafetensorsHeader result;
  result.data_start = 8 + header.size();
  for (const auto& item : root.items()) {
    if (item.key() == "__metadata__") {
      if (!item.value().is_object()) {
        throw file_error(file, "__metadata__ is not an object of text values");
      }
      for (const auto& entry : item.value().items()) {
        if (!entry.value().is_string()) {
          throw file_error(file, "__metadata__ entry '" + printable_name(entry.key()) +
                                     "' is not text");
        }
        result.metadata[entry.key()] = entry.value().get<std::string>();
      }
      continue;
    }
    result.tensors.push_back(read_entry(item.key(), item.value(), file));
  }
  std::sort(result.tensors.begin(), result.tensors.end(),
            [](const SafetensorsTensorInfo& a, const SafetensorsTensorInfo& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t expected = 0;
  const SafetensorsTensorInfo* previous = nullptr;
  for (const SafetensorsTensorInfo& tensor : result.tensors) {
    if (tensor.begin < expected) {
      throw tensor_error(file, tensor.name, "overlaps tensor '" + printable_name(previous->name) +
                                                "' in the data buffer");
    }
    if (tensor.begin > expected) {
      throw tensor_error(file, tensor.name,
                         "begins at byte " + std::to_string(tensor.begin) + ", leaving a hole of " +
                             std::to_string(tensor.begin - expected) +
                             " bytes in the data buffer (invalid)");
    }
    if (tensor.end > data_size) {
      throw tensor_error(file, tensor.name,
                         "ends at byte " + std::to_string(tensor.end) +
                             ", outside the data buffer of " + std::to_string(data_size) +
                             " bytes; the file is truncated or corrupt");
    }
    expected = tensor.end;
    previous = &tensor;
  }
  if (expected != data_size) {
    throw file_error(file, "has " + std::to_string(data_size - expected) +
                               " bytes after the last tensor's data; the header and the file "
                               "disagree (corrupt file)");
  }
  return result;
}

std::string make_safetensors_header(const std::vector<SafetensorsTensorInfo>& tensors,
                                    const std::map<std::string, std::string>& metadata) {
  json root = json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  for (const SafetensorsTensorInfo& tensor : tensors) {
    root[tensor.name] = {{"dtype", tensor.dtype},
                         {"shape", tensor.shape},
                         {"data_offsets", {tensor.begin, tensor.end}}};
  }
  std::string text = root.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string result(8, '\0');
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) result[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return result + text;
}

std::string printable_name(std::string_view text, size_t limit) {
  std::string result;
  for (size_t i = 0; i < text.size(); ++i) {
    if (result.size() >= limit) return result + "...";
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte < 0x7f) {
      result += static_cast<char>(byte);
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      result += escaped;
    }
  }
  return result;
}

}  // namespace ddpm
