// Image files in and out: decoding and PNG writing; see image_io.h. stb's decoders and
// encoders come compiled in the system's libstb, so no STB_*_IMPLEMENTATION macro is defined;
// WebP and TIFF go to webp_image.h and tiff_image.h.
#include "formats/image_io.h"

#include <stb_image.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>

#include "base/atomic_file.h"
#include "base/log.h"
#include "ddpm/error.h"
#include "formats/png.h"
#include "formats/stb_guard.h"
#include "formats/tiff_image.h"
#include "formats/webp_image.h"

// Exported by libstb but declared by stb_image_write.h only inside its implementation section.
extern "C" unsigned char* stbi_write_png_to_mem(const unsigned char* pixels, int stride_bytes,
                                                int x, int y, int n, int* out_len);

namespace ddpm {
namespace {

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    throw image_file_error(path, "cannot be opened; check that the file exists and is readable");
  }
  const std::streamoff size = in.tellg();
  if (size < 0) throw image_file_error(path, "cannot be read");
  if (size == 0) throw image_file_error(path, "is empty (0 bytes); delete or replace the file");
  if (size > kMaxImageFileBytes) {
    throw image_file_error(path, "is " + std::to_string(size) + " bytes, more than the limit of " +
                                std::to_string(kMaxImageFileBytes) +
                                " for an image file (kMaxImageFileBytes in formats/image_io.h); "
                                "downscale or recompress it");
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) throw image_file_error(path, "read failed");
  return bytes;
}

struct StbFree {
  void operator()(void* pointer) const { stbi_image_free(pointer); }
};

// Native samples (1-4 channels: gray, gray+alpha, RGB, RGBA) -> the requested 1, 3 or 4.
std::vector<uint8_t> convert_channels(const uint8_t* source, size_t pixels, int from, int to) {
  std::vector<uint8_t> out(pixels * static_cast<size_t>(to));
  const bool gray = from <= 2;
  const bool has_alpha = from == 2 || from == 4;
  for (size_t i = 0; i < pixels; ++i) {
    const uint8_t* in = source + i * static_cast<size_t>(from);
    uint8_t* px = out.data() + i * static_cast<size_t>(to);
    const int r = in[0], g = gray ? in[0] : in[1], b = gray ? in[0] : in[2];
    if (to == 1) {
      // BT.601 luma in exact integer arithmetic, rounded to nearest.
      px[0] = gray ? in[0] : static_cast<uint8_t>((299 * r + 587 * g + 114 * b + 500) / 1000);
      continue;
    }
    px[0] = static_cast<uint8_t>(r);
    px[1] = static_cast<uint8_t>(g);
    px[2] = static_cast<uint8_t>(b);
    if (to == 4) px[3] = has_alpha ? in[from - 1] : 255;
  }
  return out;
}

// stb's reason for the last failure on this thread; for truncated files it can be a fragment.
std::string stb_reason() {
  const char* reason = stbi_failure_reason();
  return reason && *reason ? reason : "no reason given";
}

}  // namespace

Error image_file_error(const std::filesystem::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "image '" + path.string() + "': " + reason);
}

Error image_decoder_missing(const std::filesystem::path& path, const std::string& format,
                            const std::string& package) {
  return image_file_error(path, "is a " + format + " file, and this ddpm was built without " +
                                    format + " support: install " + package +
                                    " (sudo apt-get install " + package +
                                    ") and rebuild, or convert the file to PNG");
}

void check_image_dimensions(const std::filesystem::path& path, uint32_t width, uint32_t height,
                            int64_t max_pixels) {
  if (width == 0 || height == 0) {
    throw image_file_error(path, "header claims " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels; the file is corrupt");
  }
  if (width > kMaxImageSide || height > kMaxImageSide) {
    throw image_file_error(path, "header claims " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels, beyond the limit of " +
                                std::to_string(kMaxImageSide) +
                                " per side that the decoder takes; downscale it first "
                                "(training resizes to data.image_size)");
  }
  if (uint64_t{width} * height > static_cast<uint64_t>(max_pixels)) {
    throw image_file_error(path, "header claims " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels, beyond the limit of " +
                                std::to_string(max_pixels) +
                                " pixels (data.max_image_pixels); downscale it first (training "
                                "resizes to data.image_size), or raise data.max_image_pixels, up "
                                "to " + std::to_string(kMaxImagePixelsLimit) +
                                " (a decode takes up to 8 bytes per pixel)");
  }
}

namespace {

// A multi-page TIFF or an animated WebP: said once per process, since a folder of them would
// otherwise say it for every file.
void note_first_frame_only(const std::filesystem::path& path, const Image& image,
                           const char* what) {
  static std::atomic<bool> said{false};
  if (image.frames <= 1 || said.exchange(true)) return;
  log::warn("image '" + path.string() + "' holds " + std::to_string(image.frames) + " " + what +
            " is read (said once: every multi-page TIFF and animated WebP is read so)");
}

Image with_channels(Image native, int channels) {
  const size_t pixels = static_cast<size_t>(native.width) * native.height;
  if (native.channels != channels) {
    native.pixels = convert_channels(native.pixels.data(), pixels, native.channels, channels);
    native.channels = channels;
  }
  return native;
}

}  // namespace

void check_image(const Image& image, const char* what) {
  const size_t expected = static_cast<size_t>(image.height) * image.width * image.channels;
  if (image.height <= 0 || image.width <= 0 || image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != expected) {
    throw Error(ErrorKind::runtime,
                std::string(what) + ": malformed image (" + std::to_string(image.height) + "x" +
                    std::to_string(image.width) + "x" + std::to_string(image.channels) + ", " +
                    std::to_string(image.pixels.size()) + " bytes)");
  }
}

Image read_image(const std::filesystem::path& path, int channels, int64_t max_pixels) {
  return decode_image(read_bytes(path), channels, path, max_pixels);
}

Image decode_image(std::string_view bytes, int channels, const std::filesystem::path& path,
                   int64_t max_pixels) {
  if (channels != 1 && channels != 3 && channels != 4) {
    throw Error(ErrorKind::runtime,
                "read_image: channels must be 1, 3 or 4, got " + std::to_string(channels));
  }
  if (max_pixels < 1 || max_pixels > kMaxImagePixelsLimit) {
    throw Error(ErrorKind::runtime, "read_image: max_pixels must be in [1, " +
                                        std::to_string(kMaxImagePixelsLimit) + "], got " +
                                        std::to_string(max_pixels));
  }
  if (bytes.empty()) throw image_file_error(path, "is empty (0 bytes); delete or replace the file");
  if (bytes.size() > static_cast<size_t>(kMaxImageFileBytes)) {
    throw image_file_error(path, "is larger than the limit of " +
                                     std::to_string(kMaxImageFileBytes) +
                                " bytes for an image file (kMaxImageFileBytes)");
  }
  if (is_tiff(bytes)) {
    Image native = decode_tiff(bytes, path, max_pixels);
    note_first_frame_only(path, native, "pages; its first page");
    return with_channels(std::move(native), channels);
  }
  if (is_webp(bytes)) {
    Image native = decode_webp(bytes, path, max_pixels);
    note_first_frame_only(path, native, "frames; its first frame");
    return with_channels(std::move(native), channels);
  }
  check_before_stb(bytes, path);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = static_cast<int>(bytes.size());
  int width = 0, height = 0, native = 0;
  // stb refuses some oversized PNG headers itself, with a vague message; name the size instead.
  if (const auto size = png_header_size(bytes)) {
    check_image_dimensions(path, size->first, size->second, max_pixels);
  }
  if (!stbi_info_from_memory(data, length, &width, &height, &native)) {
    throw image_file_error(path, "is not a readable PNG, JPEG, BMP, TGA, GIF, WebP or TIFF file "
                            "(stb_image: " +
                                stb_reason() + ")");
  }
  check_image_dimensions(path, static_cast<uint32_t>(width), static_cast<uint32_t>(height),
                   max_pixels);
  const bool sixteen_bit = stbi_is_16_bit_from_memory(data, length) != 0;
  std::unique_ptr<void, StbFree> decoded(
      sixteen_bit
          ? static_cast<void*>(stbi_load_16_from_memory(data, length, &width, &height, &native, 0))
          : static_cast<void*>(stbi_load_from_memory(data, length, &width, &height, &native, 0)));
  if (!decoded) {
    throw image_file_error(path, "cannot be decoded: the file is truncated or corrupt "
                                 "(stb_image: " +
                                stb_reason() + ")");
  }
  const size_t pixels = static_cast<size_t>(width) * height;
  const uint8_t* samples = static_cast<const uint8_t*>(decoded.get());
  std::vector<uint8_t> narrowed;
  if (sixteen_bit) {
    const auto* wide = static_cast<const uint16_t*>(decoded.get());
    narrowed.resize(pixels * native);
    for (size_t i = 0; i < narrowed.size(); ++i) {
      narrowed[i] = static_cast<uint8_t>((uint32_t{wide[i]} * 255 + 32767) / 65535);
    }
    samples = narrowed.data();
  }
  Image image;
  image.height = height;
  image.width = width;
  image.channels = channels;
  image.source_channels = native;
  image.pixels = convert_channels(samples, pixels, native, channels);
  return image;
}

void write_png(const std::filesystem::path& path, const Image& image,
               const std::vector<std::pair<std::string, std::string>>& text) {
  check_image(image, "write_png");
  int length = 0;
  std::unique_ptr<unsigned char, decltype(&std::free)> encoded(
      stbi_write_png_to_mem(image.pixels.data(), image.width * image.channels, image.width,
                            image.height, image.channels, &length),
      &std::free);
  if (!encoded) throw Error(ErrorKind::runtime, "cannot encode PNG '" + path.string() + "'");
  const std::string_view png(reinterpret_cast<const char*>(encoded.get()), length);
  write_file_atomically(path, png_with_text(png, text));
}

std::map<std::string, std::string> read_png_text(const std::filesystem::path& path) {
  return parse_png_text(read_bytes(path), path);
}

}  // namespace ddpm
