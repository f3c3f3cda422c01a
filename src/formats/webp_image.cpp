// WebP decoding; see webp_image.h. Built with libwebp when CMake found it (DDPM_WITH_WEBP);
// without it, a WebP file is refused with what to install.
#include "formats/webp_image.h"

#include <memory>
#include <string>

#include "ddpm/error.h"
#include "image_codecs.h"

#if DDPM_WITH_WEBP
#include <webp/decode.h>
#include <webp/demux.h>
#endif

namespace ddpm {
namespace {

#if DDPM_WITH_WEBP
std::string status_name(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data: the file is truncated";
    default: return "status " + std::to_string(static_cast<int>(status));
  }
}

struct AnimDecoderDelete {
  void operator()(WebPAnimDecoder* decoder) const { WebPAnimDecoderDelete(decoder); }
};

// The first frame of an animation as the viewer shows it: composed on the canvas, RGBA.
Image decode_first_frame(std::string_view bytes, const std::filesystem::path& path,
                         int64_t max_pixels, int native_channels) {
  WebPAnimDecoderOptions options;
  if (!WebPAnimDecoderOptionsInit(&options)) {
    throw image_file_error(path, "cannot be read: libwebp's version does not match its headers");
  }
  options.color_mode = MODE_RGBA;
  options.use_threads = 0;
  const WebPData data{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  std::unique_ptr<WebPAnimDecoder, AnimDecoderDelete> decoder(WebPAnimDecoderNew(&data, &options));
  WebPAnimInfo info;
  if (!decoder || !WebPAnimDecoderGetInfo(decoder.get(), &info)) {
    throw image_file_error(path, "is an animated WebP file that cannot be read: the file is "
                                 "truncated or corrupt (libwebp's demuxer refused it)");
  }
  check_image_dimensions(path, info.canvas_width, info.canvas_height, max_pixels);
  uint8_t* canvas = nullptr;
  int timestamp = 0;
  if (info.frame_count < 1 || !WebPAnimDecoderGetNext(decoder.get(), &canvas, &timestamp)) {
    throw image_file_error(path, "cannot be decoded: the first frame of the animation is truncated "
                           "or corrupt");
  }
  Image image;
  image.width = static_cast<int>(info.canvas_width);
  image.height = static_cast<int>(info.canvas_height);
  image.channels = native_channels;
  image.source_channels = native_channels;
  image.frames = static_cast<int>(info.frame_count);
  const size_t pixels = static_cast<size_t>(image.width) * image.height;
  image.pixels.resize(pixels * native_channels);
  for (size_t i = 0; i < pixels; ++i) {
    for (int c = 0; c < native_channels; ++c) {
      image.pixels[i * native_channels + c] = canvas[i * 4 + c];
    }
  }
  return image;
}
#endif

}  // namespace

bool is_webp(std::string_view bytes) {
  return bytes.size() >= 12 && bytes.substr(0, 4) == "RIFF" && bytes.substr(8, 4) == "WEBP";
}

#if DDPM_WITH_WEBP
Image decode_webp(std::string_view bytes, const std::filesystem::path& path, int64_t max_pixels) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(data, bytes.size(), &features);
  if (status != VP8_STATUS_OK) {
    throw image_file_error(path,
                           "is not a readable WebP file (libwebp: " + status_name(status) + ")");
  }
  check_image_dimensions(path, static_cast<uint32_t>(features.width),
                         static_cast<uint32_t>(features.height), max_pixels);
  const int channels = features.has_alpha ? 4 : 3;
  if (features.has_animation) return decode_first_frame(bytes, path, max_pixels, channels);
  Image image;
  image.width = features.width;
  image.height = features.height;
  image.channels = channels;
  image.source_channels = channels;
  const size_t row_bytes = static_cast<size_t>(image.width) * channels;
  image.pixels.resize(row_bytes * image.height);
  const int stride = static_cast<int>(row_bytes);
  const uint8_t* decoded =
      channels == 4
          ? WebPDecodeRGBAInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), stride)
          : WebPDecodeRGBInto(data, bytes.size(), image.pixels.data(), image.pixels.size(), stride);
  if (!decoded) {
    throw image_file_error(path, "cannot be decoded: the WebP file is truncated or corrupt");
  }
  return image;
}
#else
Image decode_webp(std::string_view, const std::filesystem::path& path, int64_t) {
  throw image_decoder_missing(path, "WebP", "libwebp-dev");
}
#endif

}  // namespace ddpm
