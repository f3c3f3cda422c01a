// Append-only run files with checked writes; see run_log.h.
#include "formats/run_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

Error append_error(const std::filesystem::path& path, const std::string& what, int error_number) {
  return Error(ErrorKind::runtime, "cannot " + what + " '" + path.string() + "' (" +
                                       std::strerror(error_number) +
                                       "); check that the disk has space and the folder is "
                                       "writable");
}

}  // namespace

AppendOnlyFile::AppendOnlyFile(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw append_error(path, "open for appending", errno);
}

AppendOnlyFile::~AppendOnlyFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendOnlyFile::append_line(std::string_view line) {
  struct stat before {};
  if (::fstat(fd_, &before) != 0) throw append_error(path_, "append to", errno);
  std::string bytes(line);
  bytes += '\n';
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t written = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      const int error_number = written < 0 ? errno : ENOSPC;
      // A part of the line may be in the file: cut it off, so the file ends at a whole line.
      if (done > 0 && ::ftruncate(fd_, before.st_size) != 0) {
        throw append_error(path_, "append to (and then cut a partial line from)", error_number);
      }
      throw append_error(path_, "append to", error_number);
    }
    done += static_cast<size_t>(written);
  }
}

void drop_metrics_after(const std::filesystem::path& file, int64_t step) {
  std::ifstream in(file);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto parsed = nlohmann::json::parse(line, nullptr, false);
    if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("step") &&
        parsed["step"].is_number_integer() && parsed["step"].get<int64_t>() <= step) {
      kept += line + "\n";
    }
  }
  write_file_atomically(file, kept);
}

}  // namespace ddpm
