// Append-only text files of a run directory (metrics.jsonl, command.txt): each line goes to the
// file in one write, and a write that fails (a full disk, a quota, an I/O error) throws naming
// the file, after cutting the file back to its last complete line, so a reader never sees half
// a line. SIGKILL can still leave a partial last line; drop_metrics_after() removes it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace ddpm {

class AppendOnlyFile {
 public:
  // Opens (creates) the file for appending. Throws ddpm::Error (runtime) naming it on failure.
  explicit AppendOnlyFile(const std::filesystem::path& path);
  ~AppendOnlyFile();
  AppendOnlyFile(const AppendOnlyFile&) = delete;
  AppendOnlyFile& operator=(const AppendOnlyFile&) = delete;

  // Appends `line` and a newline. Throws ddpm::Error (runtime) naming the file on failure.
  void append_line(std::string_view line);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// On resume: keeps the metric lines (JSON objects with an integer "step") of steps <= `step`,
// and drops the lines of later steps (they are run again) and any line that is not complete
// JSON (the last line of a killed run). Rewrites the file atomically; no file, no change.
void drop_metrics_after(const std::filesystem::path& file, int64_t step);

}  // namespace ddpm
