// The run directory's lock; see run_lock.h.
#include "base/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ddpm/error.h"

namespace ddpm {
namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown host";
  return name;
}

// The holder's "host pid" line, as it wrote it.
std::string holder_of(int fd) {
  char text[512] = {};
  const ssize_t read = ::pread(fd, text, sizeof text - 1, 0);
  std::string holder = read > 0 ? std::string(text, static_cast<size_t>(read)) : "";
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
  return holder.empty() ? "an unknown process" : holder;
}

}  // namespace

RunDirLock::RunDirLock(const std::filesystem::path& run_dir) {
  std::error_code error;
  std::filesystem::create_directories(run_dir, error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot create run directory '" + run_dir.string() +
                                        "': " + error.message());
  }
  const std::filesystem::path file = run_dir / "train.lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw Error(ErrorKind::runtime,
                "cannot open the run directory's lock '" + file.string() + "': " +
                    std::strerror(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int cause = errno;
    const std::string holder = holder_of(fd_);
    ::close(fd_);
    fd_ = -1;
    if (cause == EWOULDBLOCK) {
      throw Error(ErrorKind::usage,
                  "run directory '" + run_dir.string() + "' is in use by another ddpm train (" +
                      holder + ", lock " + file.string() +
                      "); wait for it to end or stop it, or choose another --out");
    }
    throw Error(ErrorKind::runtime, "cannot lock '" + file.string() + "': " +
                                        std::strerror(cause));
  }
  const std::string line = "host " + host_name() + " pid " + std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 ||
      ::pwrite(fd_, line.data(), line.size(), 0) != static_cast<ssize_t>(line.size())) {
    // The lock holds without the note; the message of a second trainer then says less.
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace ddpm
