// Unsigned integers stored in a file's bytes: little-endian (zip records, pickle arguments,
// safetensors' header length) and big-endian (PNG chunks, JPEG segment lengths).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ddpm {

// The `width` (at most 8) bytes at `at`, which the caller has checked lie inside `bytes`.
inline uint64_t read_little_endian(std::string_view bytes, size_t at, size_t width) {
  uint64_t value = 0;
  for (size_t i = width; i-- > 0;) value = value << 8 | static_cast<uint8_t>(bytes[at + i]);
  return value;
}

inline uint64_t read_big_endian(std::string_view bytes, size_t at, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) value = value << 8 | static_cast<uint8_t>(bytes[at + i]);
  return value;
}

}  // namespace ddpm
