// What an image file must pass before stb_image sees it. stb decodes more formats than this
// program documents, and the stb_image of Debian 12 (2.27, the system's libstb) overruns its
// buffers on some malformed files; both are refused here by looking at the bytes first. Each
// check names the stb function it protects, so it can go when stb is updated.
#pragma once

#include <filesystem>
#include <string_view>

namespace ddpm {

// Throws ddpm::Error (runtime) naming `path` for a PSD, HDR, PIC or PNM file, and for a file
// that would make stb_image 2.27 write out of bounds.
void check_before_stb(std::string_view bytes, const std::filesystem::path& path);

}  // namespace ddpm
