// Training runs through the library: exact resume, interruption, refusal of unsafe run
// directories, non-finite losses, and checkpoint files that must be refused.
#include <gtest/gtest.h>

#include <fstream>

#include "config/config_json.h"
#include "ddpm/error.h"
#include "formats/checkpoint.h"
#include "formats/weights.h"
#include "test_support.h"
#include "train/trainer.h"

namespace ddpm {
namespace {

using testing::TempDir;

class Training : public ::testing::Test {
 protected:
  Training() : temp_("trainer") { testing::write_image_folder(data(), 24, 8, 8); }
  std::filesystem::path data() const { return temp_.path() / "images"; }
  std::filesystem::path dir(const std::string& name) const { return temp_.path() / name; }
  Config config(int steps, std::vector<std::string> overrides = {}) const {
    auto json = nlohmann::json::parse(testing::small_train_config(data(), steps));
    for (const auto& assignment : overrides) apply_override(json, assignment);
    return config_from_json(json);
  }
  TrainSummary run(const Config& config, const std::filesystem::path& run_dir, bool resume,
                   std::function<void(const TrainProgress&)> on_progress = {},
                   const std::atomic<bool>* stop = nullptr) const {
    TrainRun run;
    run.run_dir = run_dir;
    run.resume = resume;
    run.command_line = "test";
    run.on_progress = std::move(on_progress);
    run.stop_requested = stop;
    return train(config, run);
  }
  static std::vector<double> losses(const std::filesystem::path& run_dir) {
    std::vector<double> values;
    std::ifstream in(run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      values.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    }
    return values;
  }
  static void expect_same_tensors(const TensorMap& a, const TensorMap& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (const auto& [name, tensor] : a) {
      ASSERT_TRUE(b.count(name)) << what << " " << name;
      EXPECT_TRUE(torch::equal(tensor, b.at(name))) << what << " " << name;
    }
  }
  TempDir temp_;
};

TEST_F(Training, ResumedRunEndsExactlyLikeAnUninterruptedOne) {
  run(config(7), dir("straight"), false);
  // The same run stopped after step 4 (a signal would set this flag), then resumed.
  std::atomic<bool> stop{false};
  const auto stopped = run(config(7), dir("resumed"), false, [&](const TrainProgress& progress) {
    if (progress.step == 4) stop = true;
  }, &stop);
  EXPECT_TRUE(stopped.interrupted);
  EXPECT_EQ(stopped.last_step, 4);
  const auto resumed = run(config(7), dir("resumed"), true);
  EXPECT_EQ(resumed.first_step, 4);
  EXPECT_EQ(resumed.last_step, 7);

  const auto a = load_checkpoint(checkpoint_file(dir("straight"), 7));
  const auto b = load_checkpoint(checkpoint_file(dir("resumed"), 7));
  expect_same_tensors(a.model, b.model, "model");
  expect_same_tensors(a.ema, b.ema, "ema");
  expect_same_tensors(a.optimizer, b.optimizer, "optimizer");
  EXPECT_EQ(losses(dir("straight")), losses(dir("resumed")));
  EXPECT_EQ(losses(dir("straight")).size(), 7u);
  // keep_checkpoints = 2: only the newest two step files remain.
  EXPECT_EQ(list_checkpoints(dir("straight")).size(), 2u);
}

TEST_F(Training, LossAwareHybridRunResumesExactly) {
  // Learned variances with L_hybrid and importance-sampled timesteps: T = 4, so the resampler
  // has every t's 10 losses after a few steps and samples by them before the interruption.
  const std::vector<std::string> improved = {
      "model.learn_variance=true", "train.loss=hybrid", "train.timestep_sampling=loss_aware",
      "diffusion.timesteps=4", "sample.sampler=ddpm", "sample.steps=4"};
  run(config(24, improved), dir("straight"), false);
  std::atomic<bool> stop{false};
  run(config(24, improved), dir("resumed"), false, [&](const TrainProgress& progress) {
    if (progress.step == 20) stop = true;
  }, &stop);
  const TrainingState middle = load_checkpoint(checkpoint_file(dir("resumed"), 20));
  ASSERT_FALSE(middle.timestep_sampler.empty());
  EXPECT_TRUE(torch::all(middle.timestep_sampler.at("counts") == 10).item<bool>())
      << "the resampler is warmed up before the interruption";
  run(config(24, improved), dir("resumed"), true);
  const auto a = load_checkpoint(checkpoint_file(dir("straight"), 24));
  const auto b = load_checkpoint(checkpoint_file(dir("resumed"), 24));
  expect_same_tensors(a.model, b.model, "model");
  expect_same_tensors(a.optimizer, b.optimizer, "optimizer");
  expect_same_tensors(a.timestep_sampler, b.timestep_sampler, "timestep sampler");
  EXPECT_EQ(losses(dir("straight")), losses(dir("resumed")));
  // The output convolution gives the variances too.
  EXPECT_EQ(a.model.at("conv_out.weight").size(0), 2);
}

TEST_F(Training, TrainingLowersTheLossAndWritesTheRunDirectory) {
  const auto summary = run(config(12, {"train.sample_every=6", "train.log_every=4"}), dir("run"),
                           false);
  EXPECT_EQ(summary.last_step, 12);
  const auto values = losses(dir("run"));
  ASSERT_EQ(values.size(), 3u);
  EXPECT_TRUE(std::isfinite(values.back()));
  EXPECT_TRUE(std::filesystem::exists(dir("run") / "config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir("run") / "command.txt"));
  EXPECT_TRUE(std::filesystem::exists(dir("run") / "samples" / "step_000000006.png"));
  EXPECT_EQ(resolve_checkpoint(dir("run")), checkpoint_file(dir("run"), 12));
  // The resolved config in the run directory re-reads to the run's config.
  EXPECT_EQ(load_config(dir("run") / "config.json", {}),
            config(12, {"train.sample_every=6", "train.log_every=4"}));
}

TEST_F(Training, RefusesToMixRunsAndToResumeFromNothing) {
  run(config(3), dir("run"), false);
  try {
    run(config(3), dir("run"), false);
    FAIL() << "a second run was started over existing checkpoints";
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "--resume");
  }
  try {
    run(config(3), dir("empty"), true);
    FAIL();
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "no checkpoint to resume");
  }
  try {
    run(config(6, {"model.base_channels=24"}), dir("run"), true);
    FAIL() << "resumed with another model";
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "model.base_channels");
  }
}

TEST_F(Training, NonFiniteLossStopsOrIsSkipped) {
  // An absurd learning rate blows the weights up after the first step.
  try {
    run(config(6, {"train.lr=1e30", "train.warmup_steps=0", "train.checkpoint_every=1"}),
        dir("stop"), false);
    FAIL() << "training went on with a non-finite loss";
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "non-finite");
    EXPECT_CONTAINS(error.what(), "step_000000001.pt");  // the last good checkpoint
  }
  EXPECT_NO_THROW(load_checkpoint(checkpoint_file(dir("stop"), 1)));
  const auto skipped = run(config(6, {"train.lr=1e30", "train.warmup_steps=0",
                                      "train.on_nonfinite=\"skip\""}),
                           dir("skip"), false);
  EXPECT_EQ(skipped.last_step, 6);
  EXPECT_GE(skipped.skipped_steps, 1);
}

TEST_F(Training, BadCheckpointFilesAreRefused) {
  run(config(3), dir("run"), false);
  const auto file = checkpoint_file(dir("run"), 3);
  const auto truncated = dir("truncated.pt");
  std::filesystem::copy_file(file, truncated);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(truncated) / 3);
  try {
    load_checkpoint(truncated);
    FAIL();
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "truncated or corrupt");
  }
  c10::impl::GenericDict future(c10::StringType::get(), c10::AnyType::get());
  future.insert("format_version", kCheckpointFormatVersion + 1);
  const auto bytes = pickle_for_python(future);
  std::ofstream(dir("future.pt"), std::ios::binary).write(bytes.data(), bytes.size());
  try {
    load_checkpoint(dir("future.pt"));
    FAIL();
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "newer than this ddpm reads");
  }
}

TEST(Checkpoint, KilledWriterLeavesThePreviousCheckpointLoadable) {
  // A child process rewrites a large checkpoint in a loop and is killed mid-write; the file
  // must always load, as the old or the new version, never a partial one.
  TempDir temp("atomic");
  const auto file = temp.path() / "checkpoint.pt";
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Start the writer, wait (at most 30 s) until a first file exists, let it write on for a
    // moment, then kill it.
    const std::string command =
        std::string(DDPM_CHECKPOINT_WRITER) + " " + file.string() + " & pid=$!; " +
        "for i in $(seq 600); do [ -f " + file.string() + " ] && break; sleep 0.05; done; " +
        "sleep 0." + std::to_string(1 + 3 * attempt) + "; kill -9 $pid; wait $pid 2>/dev/null; true";
    ASSERT_EQ(std::system(command.c_str()), 0);
    ASSERT_TRUE(std::filesystem::exists(file)) << "the writer never finished one file";
    const TrainingState state = load_checkpoint(file);
    EXPECT_GE(state.step, 1);
    EXPECT_EQ(state.model.at("weight").numel(), 4 << 20);
  }
}

}  // namespace
}  // namespace ddpm
