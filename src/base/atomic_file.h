// Writing a file so that readers see either the old file or the complete new one, never a
// partial write: write a temporary file beside it, flush it to disk, then rename it over.
#pragma once

#include <filesystem>
#include <string_view>

namespace ddpm {

// Throws ddpm::Error (runtime) naming the path when the folder is missing, the disk is full
// or the rename fails; the temporary file is removed and any previous file is left intact.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Flushes a folder's entries (a rename into it) to disk, so that the new file survives a power
// loss as well as a crash. Throws ddpm::Error naming the folder on failure.
void sync_directory(const std::filesystem::path& folder);

// Removes the temporary files (NAME.tmp.PID) that write_file_atomically leaves in `folder` when
// its process is killed mid-write; not recursive. Only for a folder no other process writes (a
// run directory under its lock). Returns how many it removed.
int remove_stale_temporaries(const std::filesystem::path& folder);

}  // namespace ddpm
