// One trainer per run directory: an advisory lock (flock) on RUN_DIR/train.lock, held by rank 0
// for the run's life, so that a second `ddpm train` on the same directory (a Slurm requeue while
// the old job still runs, a user starting it twice) cannot interleave checkpoints and metrics.
// The kernel drops the lock when its holder dies, however it dies, so a stale lock file left by
// a dead process blocks nothing.
#pragma once

#include <filesystem>

namespace ddpm {

class RunDirLock {
 public:
  // Creates the run directory when missing and takes the lock; throws ddpm::Error (usage)
  // naming the holder's host and pid when another process holds it.
  explicit RunDirLock(const std::filesystem::path& run_dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace ddpm
