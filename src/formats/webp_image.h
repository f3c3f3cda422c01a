// WebP files through Debian's libwebp: lossy, lossless, with or without alpha, and animated
// ones (their first frame, composed on the canvas). Used by decode_image (image_io.h), which
// converts the channels and applies the size limits; this file only decodes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

#include "formats/image_io.h"

namespace ddpm {

// True when the bytes start as a WebP file does ("RIFF", a size, "WEBP").
bool is_webp(std::string_view bytes);

// The file's pixels in its own channels: 3 (RGB) or 4 (RGBA, when the file has alpha);
// `frames` is the animation's frame count (1 for a still image). The canvas size is checked
// with check_image_dimensions(path, ..., max_pixels) before anything is decoded. Throws
// ddpm::Error (runtime) naming `path` for a corrupt, truncated or oversized file, and when this
// build has no WebP support.
Image decode_webp(std::string_view bytes, const std::filesystem::path& path, int64_t max_pixels);

}  // namespace ddpm
