// Disk full, for real: `ddpm train`, `ddpm sample` and `ddpm export` writing onto small tmpfs
// mounts that fill up (root only: mount(2) needs CAP_SYS_ADMIN), one test per kind of file (a
// checkpoint, a metrics line, a sample grid, a TensorBoard event file, a sample PNG, exported
// weights). Each checks the error names the file and the cause, that nothing half-written sits
// under a final name, that `latest` still names a good checkpoint, and that --resume, once there
// is space again, ends with the weights of a run that never hit the full disk. Without root the
// tests skip; the injected failures of test_atomic_writes.cpp run everywhere.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

#include "formats/checkpoint.h"
#include "formats/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::read_text;
using testing::run_ddpm;
using testing::TempDir;
using testing::temporary_files;

constexpr int64_t kPage = 4096;  // tmpfs counts its space in pages

int64_t pages(int64_t bytes) { return (bytes + kPage - 1) / kPage; }
int64_t pages_of(const fs::path& file) { return pages(static_cast<int64_t>(fs::file_size(file))); }

// A tmpfs of `bytes` mounted on `folder` (created) for the object's life.
class Tmpfs {
 public:
  Tmpfs(const fs::path& folder, int64_t bytes) : folder_(folder) {
    fs::create_directories(folder);
    const std::string options = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", folder.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      error_ = std::strerror(errno);
    }
  }
  ~Tmpfs() {
    if (mounted()) ::umount2(folder_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool mounted() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // "Frees space": the same files on a larger filesystem.
  void grow(int64_t bytes) {
    const std::string options = "size=" + std::to_string(bytes);
    ASSERT_EQ(::mount("tmpfs", folder_.c_str(), "tmpfs", MS_REMOUNT, options.c_str()), 0)
        << std::strerror(errno);
  }

 private:
  fs::path folder_;
  std::string error_;
};

#define MOUNT_OR_SKIP(tmpfs)                                                                  \
  do {                                                                                        \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";                      \
    ASSERT_TRUE((tmpfs).mounted()) << "mount -t tmpfs failed as root: " << (tmpfs).error(); \
  } while (false)

// Every line of metrics.jsonl is one complete JSON object; returns their steps, in order.
std::vector<int64_t> metric_steps(const fs::path& file) {
  std::vector<int64_t> steps;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto parsed = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << "a partial line in " << file << ": " << line;
    if (!parsed.is_discarded() && parsed.contains("loss")) steps.push_back(parsed["step"]);
  }
  const std::string text = read_text(file);
  EXPECT_TRUE(text.empty() || text.back() == '\n') << file << " does not end with a newline";
  return steps;
}

std::vector<int64_t> range(int64_t first, int64_t last) {
  std::vector<int64_t> values;
  for (int64_t value = first; value <= last; ++value) values.push_back(value);
  return values;
}

void expect_same_weights(const fs::path& checkpoint, const fs::path& reference) {
  const TrainingState got = load_checkpoint(checkpoint);
  const TrainingState want = load_checkpoint(reference);
  ASSERT_EQ(got.step, want.step);
  ASSERT_EQ(got.model.size(), want.model.size());
  for (const auto& [name, tensor] : want.model) {
    EXPECT_TRUE(torch::equal(got.model.at(name), tensor)) << name;
    EXPECT_TRUE(torch::equal(got.ema.at(name), want.ema.at(name))) << name;
  }
}

class DiskFull : public ::testing::Test {
 protected:
  DiskFull() : temp_("disk_full") {
    testing::write_image_folder(temp_.path() / "images", 16, 8, 8);
  }
  fs::path path(const std::string& name) const { return temp_.path() / name; }
  // The small config of test_support with `steps` steps and the given `--set` options; the run
  // directory `out`.
  std::string train(const fs::path& out, int steps, const std::string& options) const {
    const fs::path config = path("config_" + std::to_string(steps) + ".json");
    if (!fs::exists(config)) {
      std::ofstream(config) << testing::small_train_config(path("images"), steps);
    }
    return "train --config " + config.string() + " --out " + out.string() + " " + options;
  }
  TempDir temp_;  // first member: destroyed after the mounts inside it
};

// A checkpoint that does not fit: the run stops naming it and the last good one, which `latest`
// still names; the step file was never created; --resume ends where an unbroken run ends.
TEST_F(DiskFull, ACheckpointThatDoesNotFitStopsTheRunAndResumeContinues) {
  const std::string options = "--set train.checkpoint_every=2 --set train.keep_checkpoints=1";
  const auto reference = run_ddpm(train(path("reference"), 6, options));
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const int64_t checkpoint_pages = pages_of(checkpoint_file(path("reference"), 6));

  // Room for one checkpoint, its `latest`, and half a second one.
  const fs::path run = path("run");
  Tmpfs disk(run / "checkpoints", (checkpoint_pages * 3 / 2 + 1) * kPage);
  MOUNT_OR_SKIP(disk);
  const auto full = run_ddpm(train(run, 6, options));
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_CONTAINS(full.output, "cannot write '" + checkpoint_file(run, 4).string() + "'");
  EXPECT_CONTAINS(full.output, "No space left on device");
  EXPECT_CONTAINS(full.output, "the last good checkpoint is " + checkpoint_file(run, 2).string());
  EXPECT_CONTAINS(full.output, "--resume");
  EXPECT_EQ(read_text(run / "checkpoints" / "latest"), "step_000000002.pt\n");
  EXPECT_FALSE(fs::exists(checkpoint_file(run, 4)));
  EXPECT_EQ(temporary_files(run), std::vector<std::string>{});
  EXPECT_EQ(load_checkpoint(checkpoint_file(run, 2)).step, 2);

  disk.grow(64 << 20);
  const auto resumed = run_ddpm(train(run, 6, options + " --resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  expect_same_weights(checkpoint_file(run, 6), checkpoint_file(path("reference"), 6));
  EXPECT_EQ(list_checkpoints(run), std::vector<fs::path>{checkpoint_file(run, 6)});
  EXPECT_EQ(metric_steps(run / "metrics.jsonl"), range(1, 6));
}

// A metrics line that does not fit: the run stops naming metrics.jsonl, the file ends at a whole
// line, and --resume (from the last checkpoint, which sits on another disk) ends as an unbroken
// run with every step's line exactly once.
TEST_F(DiskFull, AMetricsLineThatDoesNotFitStopsTheRunAndResumeContinues) {
  // The pages are counted for metrics.jsonl alone: no TensorBoard file beside it.
  const std::string options = "--set train.checkpoint_every=5 --set train.tensorboard=false";
  const int steps = 40;
  const auto reference = run_ddpm(train(path("reference"), steps, options));
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  // The run directory's files before the first metrics line, and one page of metrics (about 20
  // lines of 200 bytes): line 21 or so needs a page the disk does not have.
  int64_t start_pages = 1;
  for (const char* name : {"config.json", "command.txt", "train.lock"}) {
    start_pages += pages_of(path("reference") / name);
  }
  ASSERT_GT(fs::file_size(path("reference") / "metrics.jsonl"), kPage + kPage / 4);

  const fs::path run = path("run");
  Tmpfs disk(run, start_pages * kPage);
  MOUNT_OR_SKIP(disk);
  Tmpfs checkpoints(run / "checkpoints", 64 << 20);
  ASSERT_TRUE(checkpoints.mounted()) << checkpoints.error();
  const auto full = run_ddpm(train(run, steps, options));
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_CONTAINS(full.output, "cannot append to '" + (run / "metrics.jsonl").string() + "'");
  EXPECT_CONTAINS(full.output, "No space left on device");
  const std::vector<int64_t> written = metric_steps(run / "metrics.jsonl");
  ASSERT_FALSE(written.empty());
  EXPECT_EQ(written, range(1, written.back()));
  const int64_t last_good = written.back() / 5 * 5;
  ASSERT_GT(last_good, 0) << "the first page of metrics held fewer than 5 lines";
  EXPECT_CONTAINS(full.output,
                  "the last good checkpoint is " + checkpoint_file(run, last_good).string());
  EXPECT_EQ(temporary_files(run), std::vector<std::string>{});

  disk.grow(1 << 20);
  const auto resumed = run_ddpm(train(run, steps, options + " --resume"));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_CONTAINS(resumed.output, "at step " + std::to_string(last_good));
  expect_same_weights(checkpoint_file(run, steps), checkpoint_file(path("reference"), steps));
  EXPECT_EQ(metric_steps(run / "metrics.jsonl"), range(1, steps));
}

// A sample grid that does not fit is skipped with a warning naming it; the run goes on and its
// checkpoint is whole.
TEST_F(DiskFull, ASampleGridThatDoesNotFitIsSkippedAndTheRunGoesOn) {
  const fs::path run = path("run");
  Tmpfs samples(run / "samples", kPage);  // one page, filled below
  MOUNT_OR_SKIP(samples);
  std::ofstream(run / "samples" / "filler") << std::string(kPage, 'x');
  const auto trained = run_ddpm(train(run, 4, "--set train.sample_every=2"));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  for (const std::string step : {"2", "4"}) {
    const fs::path grid = run / "samples" / ("step_00000000" + step + ".png");
    EXPECT_CONTAINS(trained.output, "cannot write '" + grid.string() + "'");
    EXPECT_CONTAINS(trained.output, "sample grid of step " + step + " skipped, training goes on");
    EXPECT_FALSE(fs::exists(grid));
  }
  EXPECT_EQ(temporary_files(run), std::vector<std::string>{});
  EXPECT_EQ(load_checkpoint(resolve_checkpoint(run)).step, 4);
}

// TensorBoard's event file on a full disk: one warning, no more TensorBoard output, and the run
// goes on to its end with every metrics line and its checkpoint.
TEST_F(DiskFull, ATensorBoardFileThatDoesNotFitStopsOnlyTensorBoard) {
  const fs::path run = path("run");
  Tmpfs events(run / "tensorboard", kPage);  // one page: a few dozen scalars
  MOUNT_OR_SKIP(events);
  const auto trained = run_ddpm(train(run, 30, "--set train.log_every=1"));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const std::string warning = "TensorBoard output stopped";
  const size_t first = trained.output.find(warning);
  ASSERT_NE(first, std::string::npos) << trained.output;
  EXPECT_EQ(trained.output.find(warning, first + 1), std::string::npos) << "warned twice";
  EXPECT_CONTAINS(trained.output, "No space left on device");
  EXPECT_EQ(metric_steps(run / "metrics.jsonl"), range(1, 30));
  EXPECT_EQ(load_checkpoint(resolve_checkpoint(run)).step, 30);
}

// `ddpm sample` onto a disk with room for three PNGs: the fourth fails naming its file, the
// three written decode whole, and nothing else is there.
TEST_F(DiskFull, SamplePngsThatDoNotFitStopWithTheFileNamedAndTheWrittenOnesWhole) {
  const auto trained = run_ddpm(train(path("run"), 2, ""));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const fs::path out = path("out");
  Tmpfs disk(out, 3 * kPage);  // a PNG of 8x8 pixels and its metadata fits in one page
  MOUNT_OR_SKIP(disk);
  const auto sampled = run_ddpm("sample --checkpoint " + path("run").string() +
                                " --sampler ddim --steps 2 --num 6 --device cpu --out " +
                                out.string());
  EXPECT_EQ(sampled.exit_code, 1) << sampled.output;
  EXPECT_CONTAINS(sampled.output, "cannot write '" + (out / "sample_00003.png").string() + "'");
  EXPECT_CONTAINS(sampled.output, "No space left on device");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(out)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"sample_00000.png", "sample_00001.png",
                                             "sample_00002.png"}));
  for (const auto& name : names) EXPECT_EQ(read_image(out / name, 1).height, 8) << name;
}

// `ddpm export` onto a full disk: the weights file that does not fit is named, and no file sits
// under its final name half-written (model_index.json, written last, is absent: no pipeline).
TEST_F(DiskFull, AnExportThatDoesNotFitLeavesNoHalfWrittenFile) {
  const auto trained = run_ddpm(train(path("run"), 2, ""));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const fs::path out = path("export");
  Tmpfs disk(out, 4 * kPage);
  MOUNT_OR_SKIP(disk);
  const auto exported =
      run_ddpm("export --checkpoint " + path("run").string() + " --out " + out.string());
  EXPECT_EQ(exported.exit_code, 1) << exported.output;
  EXPECT_CONTAINS(exported.output, "diffusion_pytorch_model.safetensors");
  EXPECT_CONTAINS(exported.output, "No space left on device");
  EXPECT_FALSE(fs::exists(out / "unet" / "diffusion_pytorch_model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "model_index.json"));
  EXPECT_EQ(temporary_files(out), std::vector<std::string>{});
}

}  // namespace
}  // namespace ddpm
