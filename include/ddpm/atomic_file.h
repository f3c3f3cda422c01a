// Writing a file so that readers see either the old file or the complete new one, never a
// partial write: write a temporary file beside it, flush it to disk, then rename it over.
#pragma once

#include <filesystem>
#include <string_view>

namespace ddpm {

// Throws ddpm::Error (runtime) naming the path when the folder is missing, the disk is full
// or the rename fails; the temporary file is removed and any previous file is left intact.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace ddpm
