// TIFF decoding; see tiff_image.h. Built with libtiff when CMake found it (DDPM_WITH_TIFF);
// without it, a TIFF file is refused with what to install. libtiff reads the bytes in memory
// through client procedures, and its messages come to a handler per open file (libtiff 4.5's
// TIFFOpenOptions), so decodes on several threads keep their own errors.
#include "formats/tiff_image.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <string>

#include "ddpm/error.h"
#include "image_codecs.h"

#if DDPM_WITH_TIFF
#include <tiffio.h>
#endif

namespace ddpm {
namespace {

#if DDPM_WITH_TIFF
struct MemoryFile {
  std::string_view bytes;
  toff_t position = 0;
  std::string first_error;  // libtiff's first error message for this file
};

tmsize_t read_proc(thandle_t handle, void* buffer, tmsize_t size) {
  auto* file = static_cast<MemoryFile*>(handle);
  if (size <= 0 || file->position >= file->bytes.size()) return 0;
  const size_t count = std::min<size_t>(static_cast<size_t>(size),
                                        file->bytes.size() - file->position);
  std::copy_n(file->bytes.data() + file->position, count, static_cast<char*>(buffer));
  file->position += count;
  return static_cast<tmsize_t>(count);
}

tmsize_t write_proc(thandle_t, void*, tmsize_t) { return 0; }

toff_t seek_proc(thandle_t handle, toff_t offset, int whence) {
  auto* file = static_cast<MemoryFile*>(handle);
  toff_t base = 0;
  if (whence == SEEK_CUR) base = file->position;
  if (whence == SEEK_END) base = file->bytes.size();
  file->position = base + offset;  // past the end reads nothing
  return file->position;
}

int close_proc(thandle_t) { return 0; }
toff_t size_proc(thandle_t handle) { return static_cast<MemoryFile*>(handle)->bytes.size(); }
int map_proc(thandle_t, void**, toff_t*) { return 0; }
void unmap_proc(thandle_t, void*, toff_t) {}

int error_handler(TIFF*, void* user, const char* module, const char* format, va_list arguments) {
  auto* file = static_cast<MemoryFile*>(user);
  if (file->first_error.empty()) {
    char message[512];
    std::vsnprintf(message, sizeof message, format, arguments);
    file->first_error = std::string(module ? module : "libtiff") + ": " + message;
  }
  return 1;  // handled: nothing goes to standard error
}

int warning_handler(TIFF*, void*, const char*, const char*, va_list) { return 1; }

struct TiffClose {
  void operator()(TIFF* tiff) const { TIFFClose(tiff); }
};
struct OptionsFree {
  void operator()(TIFFOpenOptions* options) const { TIFFOpenOptionsFree(options); }
};

std::string libtiff_says(const MemoryFile& file) {
  return file.first_error.empty() ? "" : " (" + file.first_error + ")";
}

// The page's own channel count, from what TIFFRGBAImageBegin made of its tags.
int native_channels(const TIFFRGBAImage& rgba) {
  const bool gray = rgba.photometric == PHOTOMETRIC_MINISBLACK ||
                    rgba.photometric == PHOTOMETRIC_MINISWHITE;
  return (gray ? 1 : 3) + (rgba.alpha != 0 ? 1 : 0);
}
#endif

}  // namespace

bool is_tiff(std::string_view bytes) {
  return bytes.size() >= 4 && (bytes.substr(0, 4) == std::string_view("II*\0", 4) ||
                               bytes.substr(0, 4) == std::string_view("MM\0*", 4) ||
                               bytes.substr(0, 4) == std::string_view("II+\0", 4) ||
                               bytes.substr(0, 4) == std::string_view("MM\0+", 4));
}

#if DDPM_WITH_TIFF
Image decode_tiff(std::string_view bytes, const std::filesystem::path& path, int64_t max_pixels) {
  MemoryFile file;
  file.bytes = bytes;
  std::unique_ptr<TIFFOpenOptions, OptionsFree> options(TIFFOpenOptionsAlloc());
  if (!options) throw image_file_error(path, "cannot be read: out of memory");
  TIFFOpenOptionsSetErrorHandlerExtR(options.get(), error_handler, &file);
  TIFFOpenOptionsSetWarningHandlerExtR(options.get(), warning_handler, &file);
  // No single buffer of libtiff's beyond what the largest allowed page needs (16-bit RGBA).
  TIFFOpenOptionsSetMaxSingleMemAlloc(options.get(), static_cast<tmsize_t>(max_pixels) * 8);
  std::unique_ptr<TIFF, TiffClose> tiff(
      TIFFClientOpenExt(path.string().c_str(), "rm", &file, read_proc, write_proc, seek_proc,
                        close_proc, size_proc, map_proc, unmap_proc, options.get()));
  if (!tiff) {
    throw image_file_error(path, "is not a readable TIFF file" + libtiff_says(file));
  }
  uint32_t width = 0, height = 0;
  if (!TIFFGetField(tiff.get(), TIFFTAG_IMAGEWIDTH, &width) ||
      !TIFFGetField(tiff.get(), TIFFTAG_IMAGELENGTH, &height)) {
    throw image_file_error(path, "is a TIFF file without its image size; the file is corrupt");
  }
  check_image_dimensions(path, width, height, max_pixels);
  char reason[1024] = {};
  if (!TIFFRGBAImageOK(tiff.get(), reason)) {
    throw image_file_error(path, "is a TIFF file that this program cannot read (libtiff: " +
                               std::string(reason) + "); convert it to 8- or 16-bit PNG");
  }
  TIFFRGBAImage rgba;
  if (!TIFFRGBAImageBegin(&rgba, tiff.get(), 1, reason)) {
    throw image_file_error(path, "is a TIFF file that this program cannot read (libtiff: " +
                               std::string(reason) + ")");
  }
  const int channels = native_channels(rgba);
  rgba.req_orientation = ORIENTATION_TOPLEFT;
  const size_t pixels = static_cast<size_t>(width) * height;
  std::vector<uint32_t> raster(pixels);
  const int ok = TIFFRGBAImageGet(&rgba, raster.data(), width, height);
  TIFFRGBAImageEnd(&rgba);
  if (!ok) {
    throw image_file_error(path, "cannot be decoded: the TIFF file is truncated or corrupt" +
                               libtiff_says(file));
  }
  Image image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.channels = channels;
  image.source_channels = channels;
  image.frames = std::max<int>(1, TIFFNumberOfDirectories(tiff.get()));
  image.pixels.resize(pixels * channels);
  for (size_t i = 0; i < pixels; ++i) {
    const uint32_t abgr = raster[i];
    uint8_t* out = image.pixels.data() + i * channels;
    const int color = channels <= 2 ? 1 : 3;
    out[0] = static_cast<uint8_t>(TIFFGetR(abgr));
    if (color == 3) {
      out[1] = static_cast<uint8_t>(TIFFGetG(abgr));
      out[2] = static_cast<uint8_t>(TIFFGetB(abgr));
    }
    if (channels == color + 1) {
      // libtiff hands alpha premultiplied (associated); the other decoders give it straight.
      const uint32_t alpha = TIFFGetA(abgr);
      out[color] = static_cast<uint8_t>(alpha);
      for (int c = 0; c < color; ++c) {
        out[c] = alpha == 0 ? 0
                            : static_cast<uint8_t>(
                                  std::min<uint32_t>(255, (out[c] * 255u + alpha / 2) / alpha));
      }
    }
  }
  return image;
}
#else
Image decode_tiff(std::string_view, const std::filesystem::path& path, int64_t) {
  throw image_decoder_missing(path, "TIFF", "libtiff-dev");
}
#endif

}  // namespace ddpm
