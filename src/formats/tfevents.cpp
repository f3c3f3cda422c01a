// TensorBoard's event files; see tfevents.h.
#include "formats/tfevents.h"

#include <array>
#include <cstring>

namespace ddpm {
namespace {

// Protocol buffer wire format: varints, tags (field << 3 | wire type), length-delimited fields.
void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_tag(std::string& out, int field, int wire_type) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}

void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_tag(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_int(std::string& out, int field, int64_t value) {
  put_tag(out, field, 0);
  put_varint(out, static_cast<uint64_t>(value));
}

template <typename T>
void put_fixed(std::string& out, int field, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  put_tag(out, field, sizeof(T) == 8 ? 1 : 5);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian on every machine we build for
  out.append(bytes, sizeof(T));
}

void put_little_endian(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Event { wall_time = 1 (double), step = 2 (int64), summary = 5 (Summary) }, with Summary
// { value = 1 (Value) } holding one serialized Value.
std::string event_with_value(double wall_time, int64_t step, const std::string& value) {
  std::string summary;
  put_bytes(summary, 1, value);
  std::string event;
  put_fixed(event, 1, wall_time);
  put_int(event, 2, step);
  put_bytes(event, 5, summary);
  return event;
}

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> result{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t crc = i;
      for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (crc & 1 ? 0x82F63B78u : 0u);
      result[i] = crc;
    }
    return result;
  }();
  return table;
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  const auto& table = crc_table();
  uint32_t crc = 0xFFFFFFFFu;
  for (const char c : bytes) crc = table[(crc ^ static_cast<uint8_t>(c)) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t crc = crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view payload) {
  std::string length;
  put_little_endian(length, payload.size(), 8);
  std::string record = length;
  put_little_endian(record, masked_crc32c(length), 4);
  record.append(payload);
  put_little_endian(record, masked_crc32c(payload), 4);
  return record;
}

std::string file_version_event(double wall_time) {
  std::string event;
  put_fixed(event, 1, wall_time);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value) {
  std::string entry;  // Value { tag = 1, simple_value = 2 (float) }
  put_bytes(entry, 1, tag);
  put_fixed(entry, 2, value);
  return event_with_value(wall_time, step, entry);
}

std::string image_event(double wall_time, int64_t step, std::string_view tag, int height,
                        int width, int channels, std::string_view png) {
  // Summary.Image { height = 1, width = 2, colorspace = 3, encoded_image_string = 4 }
  std::string image;
  put_int(image, 1, height);
  put_int(image, 2, width);
  put_int(image, 3, channels);
  put_bytes(image, 4, png);
  std::string entry;  // Value { tag = 1, image = 4 }
  put_bytes(entry, 1, tag);
  put_bytes(entry, 4, image);
  return event_with_value(wall_time, step, entry);
}

std::string text_event(double wall_time, int64_t step, std::string_view tag,
                       std::string_view text) {
  // SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1 } }
  std::string plugin;
  put_bytes(plugin, 1, "text");
  std::string metadata;
  put_bytes(metadata, 1, plugin);
  // TensorProto { dtype = 1 (DT_STRING = 7), tensor_shape = 2 (a scalar: empty), string_val = 8 }
  std::string tensor;
  put_int(tensor, 1, 7);
  put_bytes(tensor, 2, "");
  put_bytes(tensor, 8, text);
  std::string entry;  // Value { tag = 1, metadata = 9, tensor = 8 }
  put_bytes(entry, 1, tag);
  put_bytes(entry, 9, metadata);
  put_bytes(entry, 8, tensor);
  return event_with_value(wall_time, step, entry);
}

}  // namespace ddpm
