// The PNG container; see png.h.
#include "formats/png.h"

#include <array>

#include "base/byte_order.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

Error png_error(const std::filesystem::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "image '" + path.string() + "': " + reason);
}

// PNG chunks: 4-byte big-endian length, 4-byte type, data, CRC-32 of type and data.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

uint32_t crc32(std::string_view bytes) {
  static constexpr std::array<uint32_t, 256> table = make_crc_table();
  uint32_t c = 0xFFFFFFFFu;
  for (const char byte : bytes) c = table[(c ^ static_cast<uint8_t>(byte)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void append_u32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(value >> shift));
}

uint32_t read_u32(std::string_view bytes, size_t at) {
  return static_cast<uint32_t>(read_big_endian(bytes, at, 4));
}

std::string text_chunk(const std::string& key, const std::string& value) {
  if (key.empty() || key.size() > 79 || key.find('\0') != std::string::npos ||
      value.find('\0') != std::string::npos) {
    throw Error(ErrorKind::runtime,
                "write_png: text key '" + key +
                    "' must be 1-79 characters, and neither key nor value may hold a NUL byte");
  }
  std::string body = "tEXt" + key;
  body.push_back('\0');
  body += value;
  std::string chunk;
  append_u32(chunk, static_cast<uint32_t>(body.size() - 4));
  chunk += body;
  append_u32(chunk, crc32(body));
  return chunk;
}

constexpr size_t kIhdrEnd = 8 + 4 + 4 + 13 + 4;  // signature, then the IHDR chunk

}  // namespace

std::optional<std::pair<uint32_t, uint32_t>> png_header_size(std::string_view bytes) {
  if (bytes.size() < 24 || bytes.substr(0, 8) != kPngSignature) return std::nullopt;
  return std::make_pair(read_u32(bytes, 16), read_u32(bytes, 20));
}

std::string png_with_text(std::string_view png,
                          const std::vector<std::pair<std::string, std::string>>& text) {
  std::string out(png.substr(0, kIhdrEnd));
  for (const auto& [key, value] : text) out += text_chunk(key, value);
  out += png.substr(kIhdrEnd);
  return out;
}

std::map<std::string, std::string> parse_png_text(std::string_view png,
                                                  const std::filesystem::path& path) {
  if (png.substr(0, kPngSignature.size()) != kPngSignature) {
    throw png_error(path, "is not a PNG file (no PNG signature)");
  }
  std::map<std::string, std::string> text;
  size_t at = kPngSignature.size();
  while (true) {
    if (at + 12 > png.size()) throw png_error(path, "is truncated (no IEND chunk)");
    const size_t length = read_u32(png, at);
    if (length > png.size() - at - 12) throw png_error(path, "is truncated inside a chunk");
    const std::string_view type = png.substr(at + 4, 4);
    if (type == "IEND") return text;
    if (type == "tEXt") {
      const std::string_view body = png.substr(at + 4, 4 + length);
      if (crc32(body) != read_u32(png, at + 8 + length)) {
        throw png_error(path, "has a tEXt chunk with a wrong CRC (corrupt file)");
      }
      const std::string_view data = body.substr(4);
      const size_t separator = data.find('\0');
      if (separator == std::string_view::npos) {
        throw png_error(path, "has a tEXt chunk without a key/value separator");
      }
      text[std::string(data.substr(0, separator))] = std::string(data.substr(separator + 1));
    }
    at += 12 + length;
  }
}

}  // namespace ddpm
