// Checks of an image file's bytes before stb_image decodes it; see stb_guard.h.
#include "formats/stb_guard.h"

#include <cstdint>
#include <string>

#include "base/byte_order.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

Error guard_error(const std::filesystem::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "image '" + path.string() + "': " + reason);
}

uint8_t byte_at(std::string_view bytes, size_t at) { return static_cast<uint8_t>(bytes[at]); }

// stb also decodes PSD, HDR, PIC and PNM; these are the signatures its format tests look for.
void check_documented_format(std::string_view bytes, const std::filesystem::path& path) {
  static constexpr std::string_view kOtherFormats[] = {
      "8BPS", "\x53\x80\xF6\x34", "P5", "P6", "#?RADIANCE\n", "#?RGBE\n"};
  for (const std::string_view signature : kOtherFormats) {
    if (bytes.starts_with(signature)) {
      throw guard_error(path, "is a PSD, HDR, PIC or PNM file; convert it to PNG (images are "
                              "read from PNG, JPEG, BMP, TGA or GIF)");
    }
  }
}

// stbi__process_marker (2.27) builds each Huffman table of a DHT segment from its 16 code
// counts without checking that they add up to at most 256 codes, and writes that many entries
// into arrays of 257 (stb 2.28 added the check). Every DHT segment stb can reach is checked: the
// segments are walked as stb walks them (stb skips any byte that is not a marker, and finds
// the marker after a scan's entropy-coded data the same way), up to the end of the image.
void check_jpeg_huffman_tables(std::string_view bytes, const std::filesystem::path& path) {
  const auto corrupt = [&] {
    return guard_error(path, "is a corrupt JPEG: a Huffman table (DHT) has more than 256 codes "
                             "or does not fit its segment");
  };
  size_t at = 0;
  while (at < bytes.size() && byte_at(bytes, at) == 0xFF) ++at;
  if (at == 0 || at >= bytes.size() || byte_at(bytes, at) != 0xD8) return;  // not a JPEG
  ++at;
  while (at < bytes.size()) {
    if (byte_at(bytes, at) != 0xFF) {
      ++at;  // entropy-coded data, or bytes stb skips between segments
      continue;
    }
    while (at < bytes.size() && byte_at(bytes, at) == 0xFF) ++at;
    if (at >= bytes.size()) return;
    const uint8_t marker = byte_at(bytes, at++);
    if (marker == 0xD9) return;  // end of image: stb reads no further
    // A stuffed zero, a restart marker, TEM or another SOI: no segment follows.
    if (marker == 0x00 || marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7)) {
      continue;
    }
    if (at + 2 > bytes.size()) return;
    const size_t length = read_big_endian(bytes, at, 2);
    if (length < 2) return;  // stb refuses the segment and stops
    if (marker == 0xC4) {
      // The tables as stb reads them: a class/slot byte, 16 counts, then that many symbols;
      // stb reads a table whole even when it runs past the segment's end.
      const size_t end = at + length;
      size_t table = at + 2;
      while (table < end) {
        size_t codes = 0;  // past the end of the file stb reads zeros
        for (size_t i = table + 1; i <= table + 16 && i < bytes.size(); ++i) {
          codes += byte_at(bytes, i);
        }
        if (codes > 256) throw corrupt();
        if (table + 17 > bytes.size()) return;  // stb runs out of bytes and stops
        if (table + 17 + codes > end) throw corrupt();
        table += 17 + codes;
      }
    }
    at += length;
  }
}

// stbi__parse_png_file (2.27) copies an IDAT chunk into a buffer it allocates on the first
// chunk with data: an empty IDAT before that passes a null pointer to memcpy (undefined even
// for 0 bytes; stb 2.28 checks it). The chunks are walked as stb walks them.
void check_png_chunks(std::string_view bytes, const std::filesystem::path& path) {
  constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  if (!bytes.starts_with(kSignature)) return;
  for (size_t at = kSignature.size(); at + 8 <= bytes.size();) {
    const uint64_t length = read_big_endian(bytes, at, 4);
    const std::string_view type = bytes.substr(at + 4, 4);
    if (type == "IDAT") {
      if (length > 0) return;  // stb's buffer exists from here on
      throw guard_error(path, "is a PNG whose first image data chunk (IDAT) is empty, which "
                              "stb_image 2.27 cannot read safely; re-save the file");
    }
    if (type == "IEND") return;
    at += size_t{12} + length;
  }
}

}  // namespace

void check_before_stb(std::string_view bytes, const std::filesystem::path& path) {
  check_documented_format(bytes, path);
  check_jpeg_huffman_tables(bytes, path);
  check_png_chunks(bytes, path);
}

}  // namespace ddpm
