// `ddpm train` and `ddpm sample` end to end through the binary: configs/tiny.json on a
// generated image folder, sampling from its checkpoint, PNG metadata, refusal to overwrite, batch-size
// independence, and SIGTERM handling.
#include <gtest/gtest.h>

#include <fstream>

#include "ddpm/checkpoint.h"
#include "ddpm/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

using testing::read_text;
using testing::run_ddpm;
using testing::TempDir;

class TrainAndSample : public ::testing::Test {
 protected:
  TrainAndSample() : temp_("cli_train") {
    testing::write_image_folder(temp_.path() / "images", 40, 28, 28);
  }
  // The shipped tiny config, four steps, on the generated folder (or on `data`).
  std::string tiny(const std::string& data = "") const {
    return "--config " + std::string(DDPM_SOURCE_DIR) + "/configs/tiny.json --data " +
           (data.empty() ? (temp_.path() / "images").string() : data) +
           " --set train.steps=4 --set train.log_every=1 ";
  }
  std::filesystem::path path(const std::string& name) const { return temp_.path() / name; }
  TempDir temp_;
};

TEST_F(TrainAndSample, TrainThenSampleWritesPngsWithMetadata) {
  const auto trained = run_ddpm("train " + tiny() + "--out " + path("run").string() +
                                " --set train.sample_every=2");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_TRUE(std::filesystem::exists(path("run") / "samples" / "step_000000004.png"));
  EXPECT_CONTAINS(read_text(path("run") / "command.txt"), "train --config");

  const std::string sample = "sample --checkpoint " + path("run").string() +
                             " --sampler ddim --steps 5 --num 3 --seed 11 ";
  const auto sampled = run_ddpm(sample + "--batch 2 --out " + path("out").string() +
                                " --grid " + path("grid.png").string() + " --trajectory 2");
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_CONTAINS(sampled.output, "images/s");
  for (int i = 0; i < 3; ++i) {
    const auto file = path("out") / ("sample_0000" + std::to_string(i) + ".png");
    ASSERT_TRUE(std::filesystem::exists(file));
    const Image image = read_image(file, 1);
    EXPECT_EQ(image.height, 28);
    EXPECT_EQ(image.width, 28);
    const auto text = read_png_text(file);
    EXPECT_EQ(text.at("sampler"), "ddim");
    EXPECT_EQ(text.at("steps"), "5");
    EXPECT_EQ(text.at("seed"), "11");
    EXPECT_EQ(text.at("step"), "4");
    EXPECT_EQ(text.at("index"), std::to_string(i));
    EXPECT_CONTAINS(text.at("checkpoint"), "step_000000004.pt");
  }
  EXPECT_TRUE(std::filesystem::exists(path("grid.png")));
  EXPECT_TRUE(std::filesystem::exists(path("out") / "trajectory.png"));

  // Image k does not depend on the batch it was generated in.
  const auto single = run_ddpm(sample + "--batch 1 --out " + path("single").string());
  ASSERT_EQ(single.exit_code, 0) << single.output;
  for (int i = 0; i < 3; ++i) {
    const std::string name = "sample_0000" + std::to_string(i) + ".png";
    EXPECT_EQ(read_image(path("out") / name, 1).pixels, read_image(path("single") / name, 1).pixels)
        << name;
  }

  // Existing files are never overwritten without --overwrite, and nothing is sampled.
  const auto before = std::filesystem::last_write_time(path("out") / "sample_00000.png");
  const auto refused = run_ddpm(sample + "--out " + path("out").string());
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_CONTAINS(refused.output, "--overwrite");
  EXPECT_EQ(std::filesystem::last_write_time(path("out") / "sample_00000.png"), before);
  const auto replaced = run_ddpm(sample + "--out " + path("out").string() + " --overwrite");
  EXPECT_EQ(replaced.exit_code, 0) << replaced.output;
}

TEST_F(TrainAndSample, UsageErrorsAreClear) {
  const auto no_config = run_ddpm("train --out " + path("x").string());
  EXPECT_EQ(no_config.exit_code, 2);
  EXPECT_CONTAINS(no_config.output, "--config");
  const auto missing_data =
      run_ddpm("train " + tiny(path("nothing").string()) + "--out " + path("y").string());
  EXPECT_EQ(missing_data.exit_code, 1);
  EXPECT_CONTAINS(missing_data.output, "nothing");
  const auto no_checkpoint = run_ddpm("sample --checkpoint " + path("none").string() + " --out " +
                                      path("z").string());
  EXPECT_EQ(no_checkpoint.exit_code, 1);
  EXPECT_CONTAINS(no_checkpoint.output, "does not exist");
  const auto bad_sampler = run_ddpm("sample --checkpoint " + path("none").string());
  EXPECT_EQ(bad_sampler.exit_code, 2);
}

TEST_F(TrainAndSample, SigtermFinishesTheStepWritesACheckpointAndExits130) {
  // A long run in the background; once it has logged a step, send SIGTERM. `timeout` bounds
  // the test should the signal be ignored.
  const auto run_dir = path("long");
  const auto metrics = run_dir / "metrics.jsonl";
  const std::string command =
      "timeout -s KILL 120 " + std::string(DDPM_BINARY) + " train " + tiny() + "--out " +
      run_dir.string() + " --set train.steps=1000000 --set train.checkpoint_every=1000000 > " +
      path("log.txt").string() + " 2>&1 & pid=$!; for i in $(seq 1200); do [ -s " +
      metrics.string() + " ] && break; sleep 0.05; done; kill -TERM $pid; wait $pid; echo $? > " +
      path("exit.txt").string();
  ASSERT_EQ(std::system(command.c_str()), 0);
  EXPECT_EQ(read_text(path("exit.txt")), "130\n") << read_text(path("log.txt"));
  EXPECT_CONTAINS(read_text(path("log.txt")), "--resume");
  const TrainingState state = load_checkpoint(resolve_checkpoint(run_dir));
  EXPECT_GE(state.step, 1);

  const auto resumed = run_ddpm("train --out " + run_dir.string() + " --resume --set train.steps=" +
                                std::to_string(state.step + 2));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(load_checkpoint(resolve_checkpoint(run_dir)).step, state.step + 2);
}

}  // namespace
}  // namespace ddpm
