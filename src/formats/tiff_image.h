// TIFF files through Debian's libtiff: any layout libtiff's RGBA interface reads (gray, RGB,
// palette, YCbCr, CMYK, 1 to 16 bits per sample, strips or tiles, every compression this
// libtiff has), with or without alpha; of a multi-page file, the first page. Used by
// decode_image (image_io.h), which converts the channels and applies the size limits.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "formats/image_io.h"

namespace ddpm {

// True when the bytes start as a TIFF or BigTIFF file does ("II*\0", "MM\0*", "II+\0",
// "MM\0+").
bool is_tiff(std::string_view bytes);

// The first page's pixels in the file's own channels: 1 (gray), 2 (gray + alpha), 3 (RGB, and
// everything libtiff turns into RGB) or 4 (with alpha, unpremultiplied); `frames` is the page
// count. 16-bit samples keep their high byte (libtiff's RGBA reader: v >> 8, within one level
// of the rounding the PNG path does). The size is checked
// with check_image_dimensions(path, ..., max_pixels) before anything is decoded. Throws
// ddpm::Error (runtime) naming `path` for a corrupt, truncated, oversized or unsupported file
// (floating-point samples, for one), and when this build has no TIFF support.
Image decode_tiff(std::string_view bytes, const std::filesystem::path& path, int64_t max_pixels);

}  // namespace ddpm
