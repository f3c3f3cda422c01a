// Images as tensors and grids; see image_tensor.h.
#include "formats/image_tensor.h"

#include <algorithm>

#include "ddpm/error.h"

namespace ddpm {
namespace {

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

}  // namespace

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

}  // namespace ddpm
