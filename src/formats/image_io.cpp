// Image decoding, resizing, tensors, grids and PNG writing; see image_io.h. stb's decoders and
// encoders come compiled in the system's libstb, so no STB_*_IMPLEMENTATION macro is defined.
#include "formats/image_io.h"

#include <stb_image.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <string_view>

#include "base/atomic_file.h"
#include "base/byte_order.h"
#include "ddpm/error.h"
#include "formats/stb_guard.h"

// Exported by libstb but declared by stb_image_write.h only inside its implementation section.
extern "C" unsigned char* stbi_write_png_to_mem(const unsigned char* pixels, int stride_bytes,
                                                int x, int y, int n, int* out_len);

namespace ddpm {
namespace {

Error image_error(const std::filesystem::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "image '" + path.string() + "': " + reason);
}

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw image_error(path, "cannot be opened; check that the file exists and is readable");
  const std::streamoff size = in.tellg();
  if (size < 0) throw image_error(path, "cannot be read");
  if (size == 0) throw image_error(path, "is empty (0 bytes); delete or replace the file");
  if (size > kMaxImageFileBytes) {
    throw image_error(path, "is " + std::to_string(size) + " bytes, more than the limit of " +
                                std::to_string(kMaxImageFileBytes) +
                                " for an image file (kMaxImageFileBytes in ddpm/image_io.h); "
                                "downscale or recompress it");
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(bytes.data(), size)) throw image_error(path, "read failed");
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

// One output sample along an axis = sum of weight * input sample over `count` taps from `first`.
struct AxisWeights {
  std::vector<int> first, count;
  std::vector<float> weight;  // output-major, `max_taps` per output
  int max_taps = 0;
};

// Maps `out_len` samples, starting at `offset` in an image scaled from `in_len` to `scaled_len`,
// back to input samples: exact area coverage when shrinking, linear interpolation otherwise.
AxisWeights axis_weights(int in_len, int scaled_len, int offset, int out_len) {
  AxisWeights axis;
  const double ratio = static_cast<double>(in_len) / scaled_len;
  axis.max_taps = scaled_len < in_len ? static_cast<int>(std::ceil(ratio)) + 1 : 2;
  axis.first.resize(out_len);
  axis.count.resize(out_len);
  axis.weight.assign(static_cast<size_t>(out_len) * axis.max_taps, 0.0f);
  for (int o = 0; o < out_len; ++o) {
    const int s = o + offset;
    float* w = axis.weight.data() + static_cast<size_t>(o) * axis.max_taps;
    if (scaled_len < in_len) {
      const double lo = static_cast<double>(s) * in_len / scaled_len;
      const double hi = static_cast<double>(s + 1) * in_len / scaled_len;
      const int begin = static_cast<int>(std::floor(lo));
      const int end = std::min(in_len, static_cast<int>(std::ceil(hi)));
      axis.first[o] = begin;
      axis.count[o] = end - begin;
      for (int j = begin; j < end; ++j) {
        w[j - begin] =
            static_cast<float>((std::min(hi, j + 1.0) - std::max(lo, double(j))) / ratio);
      }
    } else {
      const double centre = std::clamp((s + 0.5) * ratio - 0.5, 0.0, in_len - 1.0);
      const int j0 = static_cast<int>(std::floor(centre));
      const double fraction = centre - j0;
      axis.first[o] = j0;
      axis.count[o] = j0 + 1 < in_len ? 2 : 1;
      w[0] = static_cast<float>(1.0 - fraction);
      if (axis.count[o] == 2) w[1] = static_cast<float>(fraction);
    }
  }
  return axis;
}

// [N, C, H, W] or [C, H, W] floats in [-1, 1] -> uint8 with channels last, on the CPU.
torch::Tensor to_uint8_channels_last(const torch::Tensor& images) {
  const int64_t channel_dim = images.dim() - 3;
  std::vector<int64_t> order;
  for (int64_t d = 0; d < channel_dim; ++d) order.push_back(d);
  order.insert(order.end(), {channel_dim + 1, channel_dim + 2, channel_dim});
  return images.detach()
      .to(torch::kCPU, torch::kFloat)
      .clamp(-1.0, 1.0)
      .add(1.0)
      .mul(127.5)
      .round()
      .to(torch::kUInt8)
      .permute(order)
      .contiguous();
}

void check_image_tensor(const torch::Tensor& tensor, int64_t dims, const char* what) {
  if (tensor.dim() != dims || !tensor.is_floating_point()) {
    throw Error(ErrorKind::runtime, std::string(what) + ": expected a floating tensor with " +
                                        std::to_string(dims) + " dimensions, got " +
                                        std::string(c10::toString(tensor.scalar_type())) +
                                        " with " + std::to_string(tensor.dim()));
  }
  const int64_t channels = tensor.size(dims - 3);
  if (channels != 1 && channels != 3 && channels != 4) {
    throw Error(ErrorKind::runtime, std::string(what) + ": images need 1, 3 or 4 channels, got " +
                                        std::to_string(channels));
  }
}

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

constexpr std::string_view kPngSignature("\x89PNG\r\n\x1a\n", 8);
constexpr size_t kIhdrEnd = 8 + 4 + 4 + 13 + 4;  // signature, then the IHDR chunk

// stb's reason for the last failure on this thread; for truncated files it can be a fragment.
std::string stb_reason() {
  const char* reason = stbi_failure_reason();
  return reason && *reason ? reason : "no reason given";
}

void check_dimensions(const std::filesystem::path& path, uint32_t width, uint32_t height,
                      int64_t max_pixels) {
  if (width == 0 || height == 0) {
    throw image_error(path, "header claims " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels; the file is corrupt");
  }
  if (width > kMaxImageSide || height > kMaxImageSide) {
    throw image_error(path, "header claims " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels, beyond the limit of " +
                                std::to_string(kMaxImageSide) +
                                " per side that the decoder takes; downscale it first "
                                "(training resizes to data.image_size)");
  }
  if (uint64_t{width} * height > static_cast<uint64_t>(max_pixels)) {
    throw image_error(path, "header claims " + std::to_string(width) + "x" +
                                std::to_string(height) + " pixels, beyond the limit of " +
                                std::to_string(max_pixels) +
                                " pixels (data.max_image_pixels); downscale it first (training "
                                "resizes to data.image_size), or raise data.max_image_pixels, up "
                                "to " + std::to_string(kMaxImagePixelsLimit) +
                                " (a decode takes up to 8 bytes per pixel)");
  }
}

}  // namespace

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
  if (bytes.empty()) throw image_error(path, "is empty (0 bytes); delete or replace the file");
  if (bytes.size() > static_cast<size_t>(kMaxImageFileBytes)) {
    throw image_error(path, "is larger than the limit of " + std::to_string(kMaxImageFileBytes) +
                                " bytes for an image file (kMaxImageFileBytes)");
  }
  check_before_stb(bytes, path);
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int length = static_cast<int>(bytes.size());
  int width = 0, height = 0, native = 0;
  // stb refuses some oversized PNG headers itself, with a vague message; name the size instead.
  if (bytes.size() >= 24 && bytes.substr(0, 8) == kPngSignature) {
    check_dimensions(path, read_u32(bytes, 16), read_u32(bytes, 20), max_pixels);
  }
  if (!stbi_info_from_memory(data, length, &width, &height, &native)) {
    throw image_error(path, "is not a readable PNG, JPEG, BMP, TGA or GIF file (stb_image: " +
                                stb_reason() + ")");
  }
  check_dimensions(path, static_cast<uint32_t>(width), static_cast<uint32_t>(height),
                   max_pixels);
  const bool sixteen_bit = stbi_is_16_bit_from_memory(data, length) != 0;
  std::unique_ptr<void, StbFree> decoded(
      sixteen_bit
          ? static_cast<void*>(stbi_load_16_from_memory(data, length, &width, &height, &native, 0))
          : static_cast<void*>(stbi_load_from_memory(data, length, &width, &height, &native, 0)));
  if (!decoded) {
    throw image_error(path, "cannot be decoded: the file is truncated or corrupt (stb_image: " +
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

Image resize_and_crop(const Image& image, int height, int width) {
  check_image(image, "resize_and_crop");
  if (height <= 0 || width <= 0) {
    throw Error(ErrorKind::runtime, "resize_and_crop: target size must be positive, got " +
                                        std::to_string(height) + "x" + std::to_string(width));
  }
  if (image.height == height && image.width == width) return image;
  // Scale so that one side matches exactly and the other covers the target, then crop.
  int scaled_h = height, scaled_w = width;
  if (int64_t{height} * image.width >= int64_t{width} * image.height) {
    scaled_w = std::max<int>(width, std::lround(double(image.width) * height / image.height));
  } else {
    scaled_h = std::max<int>(height, std::lround(double(image.height) * width / image.width));
  }
  const AxisWeights rows = axis_weights(image.height, scaled_h, (scaled_h - height) / 2, height);
  const AxisWeights cols = axis_weights(image.width, scaled_w, (scaled_w - width) / 2, width);
  const int channels = image.channels;

  // Horizontal pass over every source row, then the vertical pass.
  std::vector<float> horizontal(static_cast<size_t>(image.height) * width * channels, 0.0f);
  for (int y = 0; y < image.height; ++y) {
    const uint8_t* row = image.pixels.data() + static_cast<size_t>(y) * image.width * channels;
    float* out = horizontal.data() + static_cast<size_t>(y) * width * channels;
    for (int x = 0; x < width; ++x) {
      const float* w = cols.weight.data() + static_cast<size_t>(x) * cols.max_taps;
      for (int t = 0; t < cols.count[x]; ++t) {
        const uint8_t* px = row + static_cast<size_t>(cols.first[x] + t) * channels;
        for (int c = 0; c < channels; ++c) out[x * channels + c] += w[t] * px[c];
      }
    }
  }
  Image result;
  result.height = height;
  result.width = width;
  result.channels = channels;
  result.pixels.resize(static_cast<size_t>(height) * width * channels);
  const size_t row_size = static_cast<size_t>(width) * channels;
  std::vector<float> sum(row_size);
  for (int y = 0; y < height; ++y) {
    std::fill(sum.begin(), sum.end(), 0.0f);
    const float* w = rows.weight.data() + static_cast<size_t>(y) * rows.max_taps;
    for (int t = 0; t < rows.count[y]; ++t) {
      const float* source = horizontal.data() + (rows.first[y] + t) * row_size;
      for (size_t i = 0; i < row_size; ++i) sum[i] += w[t] * source[i];
    }
    uint8_t* out = result.pixels.data() + y * row_size;
    for (size_t i = 0; i < row_size; ++i) {
      out[i] = static_cast<uint8_t>(std::clamp(std::lround(sum[i]), 0L, 255L));
    }
  }
  return result;
}

torch::Tensor image_to_tensor(const Image& image) {
  check_image(image, "image_to_tensor");
  const auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                    {image.height, image.width, image.channels}, torch::kUInt8);
  return hwc.permute({2, 0, 1}).to(torch::kFloat).div(127.5).sub(1.0).contiguous();
}

Image tensor_to_image(const torch::Tensor& chw) {
  check_image_tensor(chw, 3, "tensor_to_image");
  const torch::Tensor hwc = to_uint8_channels_last(chw);
  Image image;
  image.channels = static_cast<int>(chw.size(0));
  image.height = static_cast<int>(chw.size(1));
  image.width = static_cast<int>(chw.size(2));
  const auto* data = hwc.data_ptr<uint8_t>();
  image.pixels.assign(data, data + hwc.numel());
  return image;
}

Image make_grid(const torch::Tensor& batch, int columns, int padding) {
  check_image_tensor(batch, 4, "make_grid");
  if (batch.size(0) < 1 || columns < 1 || padding < 0) {
    throw Error(ErrorKind::runtime,
                "make_grid: needs at least one image, columns >= 1 and padding >= 0");
  }
  const torch::Tensor nhwc = to_uint8_channels_last(batch);
  const int count = static_cast<int>(batch.size(0));
  const int channels = static_cast<int>(batch.size(1));
  const int tile_h = static_cast<int>(batch.size(2)), tile_w = static_cast<int>(batch.size(3));
  const int cols = std::min(columns, count);
  const int rows = (count + cols - 1) / cols;
  Image grid;
  grid.channels = channels;
  grid.height = rows * tile_h + (rows - 1) * padding;
  grid.width = cols * tile_w + (cols - 1) * padding;
  grid.pixels.assign(static_cast<size_t>(grid.height) * grid.width * channels, 0);
  const uint8_t* source = nhwc.data_ptr<uint8_t>();
  const size_t tile_row = static_cast<size_t>(tile_w) * channels;
  for (int n = 0; n < count; ++n) {
    const int top = (n / cols) * (tile_h + padding), left = (n % cols) * (tile_w + padding);
    for (int y = 0; y < tile_h; ++y) {
      const uint8_t* from = source + (static_cast<size_t>(n) * tile_h + y) * tile_row;
      uint8_t* to =
          grid.pixels.data() + (static_cast<size_t>(top + y) * grid.width + left) * channels;
      std::copy(from, from + tile_row, to);
    }
  }
  return grid;
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
  std::string out(png.substr(0, kIhdrEnd));
  for (const auto& [key, value] : text) out += text_chunk(key, value);
  out += png.substr(kIhdrEnd);
  write_file_atomically(path, out);
}

std::map<std::string, std::string> read_png_text(const std::filesystem::path& path) {
  return parse_png_text(read_bytes(path), path);
}

std::map<std::string, std::string> parse_png_text(std::string_view png,
                                                  const std::filesystem::path& path) {
  if (png.substr(0, kPngSignature.size()) != kPngSignature) {
    throw image_error(path, "is not a PNG file (no PNG signature)");
  }
  std::map<std::string, std::string> text;
  size_t at = kPngSignature.size();
  while (true) {
    if (at + 12 > png.size()) throw image_error(path, "is truncated (no IEND chunk)");
    const size_t length = read_u32(png, at);
    if (length > png.size() - at - 12) throw image_error(path, "is truncated inside a chunk");
    const std::string_view type = png.substr(at + 4, 4);
    if (type == "IEND") return text;
    if (type == "tEXt") {
      const std::string_view body = png.substr(at + 4, 4 + length);
      if (crc32(body) != read_u32(png, at + 8 + length)) {
        throw image_error(path, "has a tEXt chunk with a wrong CRC (corrupt file)");
      }
      const std::string_view data = body.substr(4);
      const size_t separator = data.find('\0');
      if (separator == std::string_view::npos) {
        throw image_error(path, "has a tEXt chunk without a key/value separator");
      }
      text[std::string(data.substr(0, separator))] = std::string(data.substr(separator + 1));
    }
    at += 12 + length;
  }
}

}  // namespace ddpm
