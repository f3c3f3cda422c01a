// The PNG container as pure functions over bytes: its signature and header size, tEXt metadata
// chunks inserted after the header, and read back with their CRCs checked. Encoding and
// decoding the pixels is stb's (image_io.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ddpm {

inline constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);

// Width and height from a PNG's header, when `bytes` starts with one (none otherwise).
std::optional<std::pair<uint32_t, uint32_t>> png_header_size(std::string_view bytes);

// `png` with one tEXt chunk per key/value pair right after its header. Keys are 1-79 Latin-1
// characters; neither keys nor values may contain a NUL byte (ddpm::Error otherwise).
std::string png_with_text(std::string_view png,
                          const std::vector<std::pair<std::string, std::string>>& text);

// The tEXt chunks of a PNG as key -> value. Throws ddpm::Error (runtime) naming `name` for bytes
// that are not a well-formed PNG (no signature, truncated, a chunk with a wrong CRC).
std::map<std::string, std::string> parse_png_text(std::string_view png,
                                                  const std::filesystem::path& name);

}  // namespace ddpm
