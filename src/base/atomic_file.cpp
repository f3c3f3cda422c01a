// Atomic file replacement through a temporary file, fsync and rename (POSIX).
#include "base/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ddpm/error.h"

namespace ddpm {
namespace {

Error write_error(const std::filesystem::path& path, const std::string& what, int error_number) {
  return Error(ErrorKind::runtime, "cannot write '" + path.string() + "': " + what + " (" +
                                       std::strerror(error_number) +
                                       "); check that the folder exists, is writable and that "
                                       "the disk has space");
}

}  // namespace

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  const std::filesystem::path temporary =
      path.string() + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw write_error(path, "cannot create a temporary file", errno);
  const char* data = bytes.data();
  size_t remaining = bytes.size();
  while (remaining > 0) {
    const ssize_t written = ::write(fd, data, remaining);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      const int error_number = written < 0 ? errno : ENOSPC;
      ::close(fd);
      ::unlink(temporary.c_str());
      throw write_error(path, "write failed", error_number);
    }
    data += written;
    remaining -= static_cast<size_t>(written);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int error_number = errno;
    ::unlink(temporary.c_str());
    throw write_error(path, "flush failed", error_number);
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error_number = errno;
    ::unlink(temporary.c_str());
    throw write_error(path, "rename failed", error_number);
  }
}

void sync_directory(const std::filesystem::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int error_number = errno;
    if (fd >= 0) ::close(fd);
    throw Error(ErrorKind::runtime, "cannot flush folder '" + folder.string() + "' to disk (" +
                                        std::strerror(error_number) + ")");
  }
  ::close(fd);
}

int remove_stale_temporaries(const std::filesystem::path& folder) {
  int removed = 0;
  std::error_code error;
  for (std::filesystem::directory_iterator it(folder, error), end; !error && it != end;
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    const size_t mark = name.rfind(".tmp.");
    if (mark == std::string::npos || mark == 0 || mark + 5 == name.size()) continue;
    if (name.find_first_not_of("0123456789", mark + 5) != std::string::npos) continue;
    std::error_code ignored;
    if (it->is_regular_file(ignored) && std::filesystem::remove(it->path(), ignored)) ++removed;
  }
  return removed;
}

}  // namespace ddpm
