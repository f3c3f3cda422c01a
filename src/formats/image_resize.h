// Resizing an image to a training size: scale to cover, then crop the centre.
#pragma once

#include "formats/image_io.h"

namespace ddpm {

// Scales so the image covers height × width (scale = max(height / h, width / w)), then crops the
// centre. Shrinking averages the exact covered area of each source pixel (box/area filter, no
// aliasing); enlarging is bilinear. Returns a copy when the size already matches.
Image resize_and_crop(const Image& image, int height, int width);

}  // namespace ddpm
