// Images as tensors and back, and grids of them: uint8 HWC images (image_io.h) <-> float32
// [C, H, W] in [-1, 1], and a batch tiled into one image.
#pragma once

#include <torch/torch.h>

#include "formats/image_io.h"

namespace ddpm {

// uint8 HWC -> float32 [C, H, W] in [-1, 1] (x / 127.5 - 1).
torch::Tensor image_to_tensor(const Image& image);

// The inverse for a [C, H, W] tensor in [-1, 1] on any device and of any floating dtype:
// clamped to [-1, 1], then round((x + 1) * 127.5). C must be 1, 3 or 4.
Image tensor_to_image(const torch::Tensor& chw);

// Tiles a batch [N, C, H, W] in [-1, 1] into rows of `columns` images (at most N per row), with
// `padding` black pixels between neighbouring images (none around the border).
Image make_grid(const torch::Tensor& batch, int columns, int padding = 2);

}  // namespace ddpm
