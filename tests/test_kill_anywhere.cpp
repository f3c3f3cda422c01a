// SIGKILL at any instant: `ddpm train` killed again and again at random moments (during steps,
// checkpoint writes, the rotation of kept checkpoints, metric appends, start-up), each time
// continued with --resume, ends with the weights and metrics of a run never killed; `ddpm
// sample` and `ddpm export` killed at random moments never leave a truncated file under a final
// name. The delays come from a fixed seed (printed), so a failure can be replayed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "formats/checkpoint.h"
#include "formats/image_io.h"
#include "formats/safetensors.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::read_text;
using testing::run_ddpm;
using testing::TempDir;
using testing::temporary_files;

constexpr int kKilled = -SIGKILL;

// Runs `ddpm ARGUMENTS` (output into `log`) and SIGKILLs it as soon as `trigger()` holds (polled
// every 200 us), or after `delay`, unless it ended first. Returns its exit code, or kKilled.
int run_killed_when(const std::string& arguments, const std::function<bool()>& trigger,
                    std::chrono::microseconds delay, const fs::path& log) {
  const std::string command =
      "exec " + std::string(DDPM_BINARY) + " " + arguments + " > " + log.string() + " 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + delay;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline && !trigger()) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return kKilled;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::chrono::microseconds seconds(double value) {
  return std::chrono::microseconds(static_cast<int64_t>(value * 1e6));
}

double time_of(const std::function<void()>& action) {
  const auto start = std::chrono::steady_clock::now();
  action();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class KillAnywhere : public ::testing::Test {
 protected:
  KillAnywhere() : temp_("kill_anywhere") {
    testing::write_image_folder(temp_.path() / "images", 16, 8, 8);
    std::ofstream(path("config.json")) << testing::small_train_config(path("images"), kSteps);
  }
  fs::path path(const std::string& name) const { return temp_.path() / name; }
  // Checkpoints every step, two kept: most instants fall in a checkpoint write or a rotation.
  std::string train(const fs::path& out) const {
    return "train --config " + path("config.json").string() + " --out " + out.string() +
           " --set train.checkpoint_every=1 --set train.keep_checkpoints=2";
  }
  static constexpr int kSteps = 24;
  TempDir temp_;
};

// Killed after its first step file was renamed into place and before `latest` named it: the
// step file is whole, --resume takes it and ends as an unbroken run.
TEST_F(KillAnywhere, AFirstStepFileWithoutLatestIsResumedFrom) {
  const auto reference = run_ddpm(train(path("reference")));
  ASSERT_EQ(reference.exit_code, 0) << reference.output;
  const fs::path run = path("run");
  const auto first = run_ddpm(train(run) + " --set train.steps=1");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  fs::remove(run / "checkpoints" / "latest");
  EXPECT_EQ(resolve_checkpoint(run), checkpoint_file(run, 1));
  const auto resumed = run_ddpm(train(run) + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const TrainingState got = load_checkpoint(resolve_checkpoint(run));
  const TrainingState want = load_checkpoint(resolve_checkpoint(path("reference")));
  for (const auto& [name, tensor] : want.model) {
    EXPECT_TRUE(torch::equal(got.model.at(name), tensor)) << name;
  }
}

// The moments a kill is aimed at, in turn: a random instant; while a checkpoint or `latest` is
// being written (a temporary file exists in checkpoints/); during the rotation of the kept
// checkpoints (three step files exist, two are kept); just after a metrics line is appended.
enum class Moment { random, checkpoint_write, rotation, metrics_append, count };
const char* name_of(Moment moment) {
  switch (moment) {
    case Moment::random: return "random";
    case Moment::checkpoint_write: return "checkpoint write";
    case Moment::rotation: return "rotation";
    case Moment::metrics_append: return "just after a metrics line";
    case Moment::count: break;
  }
  return "";
}

bool during(Moment moment, const fs::path& run, uintmax_t metrics_size) {
  std::error_code error;
  switch (moment) {
    case Moment::random:
    case Moment::count:
      return false;
    case Moment::checkpoint_write:
      return fs::exists(run / "checkpoints", error) &&
             !temporary_files(run / "checkpoints").empty();
    case Moment::rotation:
      return fs::exists(run / "checkpoints", error) && list_checkpoints(run).size() > 2;
    case Moment::metrics_append: {
      const uintmax_t size = fs::file_size(run / "metrics.jsonl", error);
      return !error && size != metrics_size && size > 0;
    }
  }
  return false;
}

void expect_same_run(const fs::path& run, const fs::path& reference, int steps) {
  const TrainingState got = load_checkpoint(resolve_checkpoint(run));
  const TrainingState want = load_checkpoint(resolve_checkpoint(reference));
  ASSERT_EQ(got.step, steps);
  for (const auto& [name, tensor] : want.model) {
    EXPECT_TRUE(torch::equal(got.model.at(name), tensor)) << name;
    EXPECT_TRUE(torch::equal(got.ema.at(name), want.ema.at(name))) << name;
  }
  for (const auto& [name, tensor] : want.optimizer) {
    EXPECT_TRUE(torch::equal(got.optimizer.at(name), tensor)) << name;
  }
  // Every step's metrics line exactly once, as in the unbroken run; two checkpoints kept.
  std::vector<int64_t> seen, wanted;
  std::ifstream in(run / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    seen.push_back(nlohmann::json::parse(line).at("step").get<int64_t>());
  }
  for (int64_t step = 1; step <= steps; ++step) wanted.push_back(step);
  EXPECT_EQ(seen, wanted);
  EXPECT_EQ(list_checkpoints(run),
            (std::vector<fs::path>{checkpoint_file(run, steps - 1), checkpoint_file(run, steps)}));
  EXPECT_EQ(temporary_files(run), std::vector<std::string>{})
      << "the last start removes what the kills left";
}

TEST_F(KillAnywhere, TrainingKilledAtRandomInstantsResumesToTheWeightsOfAnUnbrokenRun) {
  const double unbroken_seconds = time_of([&] {
    const auto reference = run_ddpm(train(path("reference")));
    ASSERT_EQ(reference.exit_code, 0) << reference.output;
  });
  const unsigned seed = 20261204;
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> delay(0.0, unbroken_seconds);
  constexpr int kWantedKills = 32;
  int kills = 0, attempts = 0, rounds = 0;
  std::map<std::string, int> by_moment;
  int cut_writes = 0;
  // Rounds of one run each, killed until it completes, until enough kills are done.
  while (kills < kWantedKills) {
    const fs::path run = path("run_" + std::to_string(++rounds));
    for (int round_kills = 0;; ++round_kills) {
      ASSERT_LT(attempts, 600) << "no end after 600 runs";
      const bool resume = fs::exists(run / "checkpoints") && !list_checkpoints(run).empty();
      const auto moment = static_cast<Moment>(attempts % static_cast<int>(Moment::count));
      std::error_code error;
      const uintmax_t metrics_size = fs::file_size(run / "metrics.jsonl", error);
      const bool last = round_kills >= 12;  // a round ends with a run left alone
      const double wait = last ? 1e9 : delay(random) + (moment == Moment::random ? 0 : 2.0);
      const int code = run_killed_when(
          train(run) + (resume ? " --resume" : ""),
          [&] { return !last && during(moment, run, error ? 0 : metrics_size); }, seconds(wait),
          path("log.txt"));
      ++attempts;
      if (code == 0) break;
      ASSERT_EQ(code, kKilled) << "run " << attempts << ": " << read_text(path("log.txt"));
      ++kills;
      ++by_moment[name_of(moment)];
      cut_writes += fs::exists(run) && !temporary_files(run).empty();
    }
    expect_same_run(run, path("reference"), kSteps);
    if (HasFailure()) return;
  }
  std::cout << "[ kills    ] " << kills << " SIGKILLs in " << rounds << " runs resumed to the end ("
            << attempts << " starts, seed " << seed << "):";
  for (const auto& [moment, count] : by_moment) std::cout << " " << count << " " << moment << ";";
  std::cout << " " << cut_writes << " left a file write unfinished\n";
}

// `ddpm sample` and `ddpm export` killed at random instants and while a file is being written:
// every file under a final name is complete (PNGs decode, safetensors and JSON parse).
TEST_F(KillAnywhere, SampleAndExportKilledAtRandomInstantsLeaveNoTruncatedFile) {
  const auto trained = run_ddpm(train(path("run")));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const std::string sample = "sample --checkpoint " + path("run").string() +
                             " --sampler ddim --steps 2 --num 64 --batch 4 --device cpu --out ";
  const std::string exporting = "export --checkpoint " + path("run").string() + " --out ";
  double sample_seconds = 0, export_seconds = 0;
  sample_seconds =
      time_of([&] { ASSERT_EQ(run_ddpm(sample + path("s").string()).exit_code, 0); });
  export_seconds =
      time_of([&] { ASSERT_EQ(run_ddpm(exporting + path("e").string()).exit_code, 0); });
  std::mt19937 random(7);
  int pngs = 0, cut = 0;
  for (int kill = 0; kill < 12; ++kill) {
    const fs::path out = path("sample_" + std::to_string(kill));
    const bool aimed = kill % 2 == 1;  // odd kills: while a PNG is being written
    const double wait = std::uniform_real_distribution<double>(0.3, sample_seconds)(random);
    run_killed_when(
        sample + out.string(),
        [&] { return aimed && fs::exists(out) && !temporary_files(out).empty(); },
        seconds(aimed ? 1e9 : wait), path("log.txt"));
    if (!fs::exists(out)) continue;
    cut += !temporary_files(out).empty();
    for (const auto& entry : fs::directory_iterator(out)) {
      if (entry.path().extension() != ".png") continue;
      const Image image = read_image(entry.path(), 1);  // throws on a truncated PNG
      EXPECT_EQ(image.height, 8) << entry.path();
      ++pngs;
    }
  }
  int exported = 0;
  for (int kill = 0; kill < 12; ++kill) {
    const fs::path out = path("export_" + std::to_string(kill));
    const bool aimed = kill % 2 == 1;
    const double wait = std::uniform_real_distribution<double>(0.2, export_seconds)(random);
    run_killed_when(
        exporting + out.string(),
        [&] { return aimed && fs::exists(out) && !temporary_files(out).empty(); },
        seconds(aimed ? 1e9 : wait), path("log.txt"));
    cut += fs::exists(out) && !temporary_files(out).empty();
    const fs::path weights = out / "unet" / "diffusion_pytorch_model.safetensors";
    if (fs::exists(weights)) {
      EXPECT_FALSE(read_safetensors(weights).tensors.empty()) << weights;
      ++exported;
    }
    for (const fs::path& json : {out / "unet" / "config.json", out / "model_index.json",
                                 out / "scheduler" / "scheduler_config.json"}) {
      if (fs::exists(json)) {
        EXPECT_NO_THROW(nlohmann::json::parse(read_text(json))) << json;
      }
    }
  }
  std::cout << "[ kills    ] sample: 12 kills, " << pngs << " whole PNGs checked; export: 12 "
            << "kills, " << exported << " whole weight files; " << cut
            << " kills left a file write unfinished\n";
  EXPECT_GT(pngs, 0);
  EXPECT_GT(cut, 0) << "no kill landed during a write: the aimed kills should";
}

}  // namespace
}  // namespace ddpm
