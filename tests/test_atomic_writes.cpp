// Injected write failures, without root: RLIMIT_FSIZE makes write(2) fail with EFBIG past a
// size, as a full disk fails with ENOSPC, so the same code paths run (test_disk_full.cpp fills
// real filesystems). The atomic writer keeps the previous file and leaves no temporary; the
// append-only run log cuts a partial line off; stale temporaries of killed writers are removed.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <fstream>
#include <random>

#include "base/atomic_file.h"
#include "ddpm/error.h"
#include "formats/checkpoint.h"
#include "formats/image_io.h"
#include "formats/run_log.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::read_text;
using testing::TempDir;

// Files larger than `bytes` cannot be written while the object lives (SIGXFSZ ignored, so the
// write fails with EFBIG instead of killing the process).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &previous_);
    rlimit limit = previous_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    std::signal(SIGXFSZ, previous_handler_);
  }

 private:
  rlimit previous_{};
  void (*previous_handler_)(int) = nullptr;
};

std::vector<std::string> names_in(const fs::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(folder)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST(AtomicWrites, AFailedWriteKeepsThePreviousFileAndLeavesNoTemporary) {
  TempDir temp("atomic_writes");
  const fs::path file = temp.path() / "latest";
  write_file_atomically(file, "old\n");
  {
    FileSizeLimit limit(1000);
    const std::string message = error_of([&] { write_file_atomically(file, std::string(5000, 'x')); });
    EXPECT_CONTAINS(message, "cannot write '" + file.string() + "'");
    EXPECT_CONTAINS(message, "File too large");
  }
  EXPECT_EQ(read_text(file), "old\n");
  EXPECT_EQ(names_in(temp.path()), std::vector<std::string>{"latest"});
}

TEST(AtomicWrites, CheckpointsAndPngsThatCannotBeWrittenNameTheirFile) {
  TempDir temp("atomic_writes_kinds");
  TrainingState state;
  state.config.train.steps = 1;
  state.model["weight"] = torch::arange(4096, torch::kFloat32);
  Image image;
  image.width = image.height = 256;
  image.channels = 3;
  image.pixels.resize(256 * 256 * 3);
  std::mt19937 random(5);  // noise: the PNG stays far larger than the limit
  for (auto& pixel : image.pixels) pixel = static_cast<uint8_t>(random());
  {
    FileSizeLimit limit(4096);
    EXPECT_CONTAINS(error_of([&] { save_checkpoint(temp.path() / "step.pt", state); }),
                    "cannot write '" + (temp.path() / "step.pt").string() + "'");
    EXPECT_CONTAINS(error_of([&] { write_png(temp.path() / "grid.png", image, {}); }),
                    "cannot write '" + (temp.path() / "grid.png").string() + "'");
  }
  EXPECT_EQ(names_in(temp.path()), std::vector<std::string>{});
}

TEST(AtomicWrites, AnAppendThatFailsHalfwayCutsThePartialLineOff) {
  TempDir temp("append_only");
  const fs::path file = temp.path() / "metrics.jsonl";
  AppendOnlyFile log(file);
  log.append_line(R"({"step": 1})");
  const std::string before = read_text(file);
  {
    FileSizeLimit limit(before.size() + 10);  // half of the next line fits
    const std::string message = error_of([&] { log.append_line(std::string(40, 'y')); });
    EXPECT_CONTAINS(message, "cannot append to '" + file.string() + "'");
    EXPECT_CONTAINS(message, "File too large");
  }
  EXPECT_EQ(read_text(file), before);
  log.append_line(R"({"step": 2})");  // the file goes on from its last whole line
  EXPECT_EQ(read_text(file), before + "{\"step\": 2}\n");
}

TEST(AtomicWrites, ResumeDropsLaterStepsAndAPartialLastLine) {
  TempDir temp("drop_metrics");
  const fs::path file = temp.path() / "metrics.jsonl";
  std::ofstream(file) << "{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2, \"loss\": 0.4}\n"
                      << "{\"step\": 3, \"loss\": 0.3}\n{\"step\": 4, \"lo";
  drop_metrics_after(file, 3);
  EXPECT_EQ(read_text(file),
            "{\"step\": 1, \"loss\": 0.5}\n{\"step\": 2, \"loss\": 0.4}\n{\"step\": 3, \"loss\": "
            "0.3}\n");
  drop_metrics_after(file, 1);
  EXPECT_EQ(read_text(file), "{\"step\": 1, \"loss\": 0.5}\n");
}

TEST(AtomicWrites, StaleTemporariesOfKilledWritersAreRemovedAndNothingElse) {
  TempDir temp("stale_temporaries");
  for (const std::string name : {"step_000000004.pt.tmp.1234", "latest.tmp.99", "config.json",
                                 "notes.tmp.txt", "step_000000002.pt", "x.tmp."}) {
    std::ofstream(temp.path() / name) << "x";
  }
  EXPECT_EQ(remove_stale_temporaries(temp.path()), 2);
  EXPECT_EQ(names_in(temp.path()), (std::vector<std::string>{"config.json", "notes.tmp.txt",
                                                             "step_000000002.pt", "x.tmp."}));
}

}  // namespace
}  // namespace ddpm
