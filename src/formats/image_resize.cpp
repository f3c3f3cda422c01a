// Resizing with a centre crop; see image_resize.h.
#include "formats/image_resize.h"

#include <algorithm>
#include <cmath>

#include "ddpm/error.h"

namespace ddpm {
namespace {

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

}  // namespace

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

}  // namespace ddpm
