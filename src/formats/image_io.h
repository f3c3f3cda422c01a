// Image files in and out: decoding with size limits (PNG, JPEG, BMP, TGA, GIF through stb) and
// channel conversion, and PNG writing with tEXt metadata chunks (the container: png.h). Pixels
// are 8-bit, stored row-major as height × width × channels (HWC). Resizing is image_resize.h;
// tensors and grids image_tensor.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ddpm/error.h"

namespace ddpm {

struct Image {
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels bytes, HWC
  // read_image: the file's own channel count (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) before
  // conversion; 0 for images made in memory.
  int source_channels = 0;
  // read_image: the frames (pages) the file holds, of which the first was decoded: a multi-page
  // TIFF's pages, an animated WebP's frames; 1 for every other file.
  int frames = 1;
};

// Largest image decode_image() decodes by default; a header claiming more is refused before
// decoding, so one decode holds at most 512 MiB (16-bit RGBA at the limit). Training resizes
// every image to data.image_size, so a larger photo only costs memory and time: downscale it
// first, or raise data.max_image_pixels (up to kMaxImageSide squared) for training.
inline constexpr int kMaxImageSide = 16384;
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 26;  // 8192 x 8192
inline constexpr int64_t kMaxImagePixelsLimit = int64_t{kMaxImageSide} * kMaxImageSide;
// Larger than any image file within the pixel limit; a longer file is refused unread.
inline constexpr int64_t kMaxImageFileBytes = int64_t{1} << 30;

// Throws ddpm::Error (runtime) naming `what` unless the image's size and pixel count agree.
void check_image(const Image& image, const char* what);

// The error every decoder throws: ddpm::Error (runtime), "image 'PATH': REASON".
Error image_file_error(const std::filesystem::path& path, const std::string& reason);
// The same for a format this build has no decoder for: what to install (`package`) and rebuild.
Error image_decoder_missing(const std::filesystem::path& path, const std::string& format,
                            const std::string& package);

// Throws ddpm::Error (runtime) naming `path` for a header's size of 0 pixels, more than
// kMaxImageSide on a side, or more than `max_pixels` pixels: what every decoder checks before
// it decodes.
void check_image_dimensions(const std::filesystem::path& path, uint32_t width, uint32_t height,
                            int64_t max_pixels);

// Decodes PNG, JPEG, BMP, TGA or GIF (first frame) through stb, WebP (webp_image.h: first frame
// of an animation) and TIFF (tiff_image.h: first page; a multi-page file is said once per
// process, as a warning), 8- or 16-bit (16-bit is rounded to 8-bit; TIFF keeps the high
// byte), into `channels` channels (1, 3 or 4): gray -> RGB replicates, RGB -> gray is the
// ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B, alpha is dropped or added as 255. Other
// formats stb knows (PSD, HDR, PIC, PNM) are refused. Throws ddpm::Error (runtime) naming the
// file for an unreadable, empty, truncated, corrupt or oversized file (more than `max_pixels`
// pixels, at most kMaxImagePixelsLimit, or more than kMaxImageSide on a side).
Image read_image(const std::filesystem::path& path, int channels,
                 int64_t max_pixels = kMaxImagePixels);
// The same from the file's bytes; `name` is the file that errors name.
Image decode_image(std::string_view bytes, int channels, const std::filesystem::path& name,
                   int64_t max_pixels = kMaxImagePixels);

// Writes a PNG atomically (see atomic_file.h) with one tEXt chunk per key/value pair, right after
// the header. Keys are 1-79 Latin-1 characters; neither keys nor values may contain a NUL byte.
void write_png(const std::filesystem::path& path, const Image& image,
               const std::vector<std::pair<std::string, std::string>>& text = {});
// The tEXt chunks of a PNG file as key -> value. Throws ddpm::Error (runtime) for a file that
// cannot be read or is not a well-formed PNG.
std::map<std::string, std::string> read_png_text(const std::filesystem::path& path);
// (parse_png_text in png.h reads them from bytes.)

}  // namespace ddpm
