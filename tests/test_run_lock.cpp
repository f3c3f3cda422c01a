// The run directory's lock (run_lock.h) within one process: a second lock is refused naming
// the holder, and a released lock can be taken again.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "base/run_lock.h"
#include "ddpm/error.h"
#include "test_support.h"

namespace ddpm {
namespace {

TEST(RunDirLock, ASecondHolderIsRefusedUntilTheFirstLetsGo) {
  testing::TempDir temp("run_lock");
  const std::filesystem::path run_dir = temp.path() / "new" / "run";
  {
    RunDirLock first(run_dir);  // creates the directory
    EXPECT_TRUE(std::filesystem::exists(run_dir / "train.lock"));
    const std::string refusal = testing::error_of([&] { RunDirLock second(run_dir); });
    EXPECT_CONTAINS(refusal, "is in use by another ddpm train");
    EXPECT_CONTAINS(refusal, "pid " + std::to_string(::getpid()));
    EXPECT_CONTAINS(refusal, run_dir.string());
    try {
      RunDirLock second(run_dir);
      ADD_FAILURE() << "a second lock was granted";
    } catch (const Error& error) {
      EXPECT_EQ(error.exit_code(), 2);
    }
  }
  EXPECT_EQ(testing::error_of([&] { RunDirLock again(run_dir); }), "(no error)");
}

}  // namespace
}  // namespace ddpm
