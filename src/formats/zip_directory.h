// The entries of a zip archive as its central directory and local headers state them, checked
// against the file: torch.save archives are read through this (weights.h), not through
// LibTorch's reader, which allocates each entry by the size the file claims and leaks on a
// corrupt file. The lookup is miniz's: the last end-of-directory record, zip64 when its
// locator is there.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ddpm {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;           // 0: stored, 8: deflated
  uint64_t compressed_size = 0;  // the bytes in the file
  uint64_t size = 0;             // the bytes once extracted
  uint64_t data_offset = 0;      // where the entry's (compressed) bytes start in the file
};

// Throws ddpm::Error (runtime) starting with `what` when the file cannot be read, has no
// central directory, or an entry whose header or bytes are not inside the file.
std::vector<ZipEntry> read_zip_directory(const std::filesystem::path& file,
                                         const std::string& what);

}  // namespace ddpm
