// TensorBoard's event files, as pure functions over bytes: the TFRecord framing (length, its
// masked CRC-32C, the payload, its masked CRC-32C) around Event protocol buffers that carry a
// Summary of one Value: a float scalar, an image (PNG bytes) or a text (a string tensor with
// the "text" plugin's metadata). Field numbers are those of TensorFlow's event.proto,
// summary.proto, tensor.proto and tensor_shape.proto; no protobuf library is needed to write
// them. TensorBoard reads the files (tests/tensorboard_check.py reads them with its loader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ddpm {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), and TFRecord's masked form:
// ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t crc32c(std::string_view bytes);
uint32_t masked_crc32c(std::string_view bytes);

// One TFRecord: uint64 length (little-endian), masked CRC of those 8 bytes, the payload, masked
// CRC of the payload.
std::string tfrecord(std::string_view payload);

// Serialized Event messages. `wall_time`: seconds since the epoch.
std::string file_version_event(double wall_time);  // file_version "brain.Event:2"
std::string scalar_event(double wall_time, int64_t step, std::string_view tag, float value);
// `png`: the encoded image; height, width and channels (1 gray, 3 RGB, 4 RGBA) as it holds them.
std::string image_event(double wall_time, int64_t step, std::string_view tag, int height,
                        int width, int channels, std::string_view png);
std::string text_event(double wall_time, int64_t step, std::string_view tag,
                       std::string_view text);

}  // namespace ddpm
