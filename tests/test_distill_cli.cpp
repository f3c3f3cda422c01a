// ddpm distill on the shipped Fashion-MNIST model, two short rounds (8 -> 4 -> 2 steps): each
// round's student is a checkpoint that samples on its own grid, a run resumed mid-round ends
// bit for bit where the uninterrupted one did, a student exports as a diffusers DDIM pipeline,
// and impossible requests are refused before any work.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "formats/checkpoint.h"
#include "formats/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::run_ddpm;

const std::string kModel = std::string(DDPM_SOURCE_DIR) + "/data/models/fashion_mnist_cpu.pt";

class DistillCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new testing::TempDir("distill_cli");
    fs::create_directories(images());
    for (int k = 0; k < 8; ++k) {
      Image image{28, 28, 1, std::vector<uint8_t>(28 * 28)};
      for (int i = 0; i < 28 * 28; ++i) {
        image.pixels[i] = static_cast<uint8_t>(((i % 28) * (3 + k) + (i / 28) * 5) % 256);
      }
      write_png(images() / ("img_" + std::to_string(k) + ".png"), image);
    }
    // Per-round evaluation: 8 samples in a feature network of 4x4 block means.
    testing::write_feature_net(file("blocks.pt"),
                               "def forward(self, x):\n"
                               "  return x.reshape(x.size(0), 4, 7, 4, 7)"
                               ".mean([2, 4]).flatten(1)\n",
                               {1, 28, 28});
    first_run_ = new testing::CommandResult(run_ddpm(
        "distill " + arguments(run()) + " --set train.eval_every=100 --set train.eval_samples=8" +
        " --set train.eval_real=" + images().string() +
        " --set train.eval_feature_net=" + file("blocks.pt").string()));
  }
  static void TearDownTestSuite() {
    delete first_run_;
    delete temp_;
  }
  static fs::path images() { return temp_->path() / "images"; }
  static fs::path run() { return temp_->path() / "run"; }
  static fs::path file(const std::string& name) { return temp_->path() / name; }
  // Two rounds of 4 steps, a checkpoint every 2 steps, all kept.
  static std::string arguments(const fs::path& out) {
    return "--teacher " + kModel + " --data " + images().string() + " --out " + out.string() +
           " --threads 1 --set distill.start_steps=8 --set distill.end_steps=2"
           " --set distill.steps_per_round=4 --set train.batch_size=4 --set train.lr=1e-4"
           " --set train.warmup_steps=0 --set train.ema_decay=0.5 --set train.log_every=1"
           " --set train.checkpoint_every=2 --set train.keep_checkpoints=10"
           " --set train.sample_every=0 --set train.device=cpu";
  }
  // The run as it would be had it been killed after `step`: later checkpoints gone, `latest`
  // at that step, no published students after it.
  static fs::path interrupted_copy(const std::string& name, int step) {
    const fs::path copy = file(name);
    fs::copy(run(), copy, fs::copy_options::recursive);
    for (int later = step + 2; later <= 8; later += 2) {
      fs::remove(checkpoint_file(copy, later));
    }
    std::ofstream(copy / "checkpoints" / "latest")
        << checkpoint_file(copy, step).filename().string();
    if (step < 8) fs::remove_all(copy / "rounds" / "steps_002");
    if (step < 4) fs::remove_all(copy / "rounds" / "steps_004");
    return copy;
  }
  static void expect_same_weights(const fs::path& a, const fs::path& b) {
    const TrainingState left = load_checkpoint(resolve_checkpoint(a));
    const TrainingState right = load_checkpoint(resolve_checkpoint(b));
    EXPECT_EQ(left.step, right.step);
    ASSERT_EQ(left.ema.size(), right.ema.size());
    for (const auto& [name, tensor] : left.ema) {
      EXPECT_TRUE(torch::equal(tensor, right.ema.at(name))) << a << " " << name;
      EXPECT_TRUE(torch::equal(left.model.at(name), right.model.at(name))) << a << " " << name;
    }
  }
  static testing::TempDir* temp_;
  static testing::CommandResult* first_run_;
};

testing::TempDir* DistillCli::temp_ = nullptr;
testing::CommandResult* DistillCli::first_run_ = nullptr;

nlohmann::json json_of(const fs::path& file) {
  return nlohmann::json::parse(testing::read_text(file));
}

TEST_F(DistillCli, EachRoundPublishesAStudentThatSamplesOnItsOwnGrid) {
  ASSERT_EQ(first_run_->exit_code, 0) << first_run_->output;
  EXPECT_CONTAINS(first_run_->output, "the 4-step student (step 4) is in");
  EXPECT_CONTAINS(first_run_->output, "round 2: 4-step teacher, 2-step student");
  for (const int steps : {4, 2}) {
    const fs::path folder = run() / "rounds" / (steps == 4 ? "steps_004" : "steps_002");
    ASSERT_TRUE(fs::exists(folder / "checkpoints" / "latest")) << folder;
    const nlohmann::json config = json_of(folder / "config.json");
    EXPECT_EQ(config["sample"]["sampler"], "ddim");
    EXPECT_EQ(config["sample"]["steps"], steps);
    EXPECT_EQ(config["sample"]["spacing"], "trailing");
    EXPECT_EQ(config["distill"]["start_steps"], 8);
  }
  // metrics.jsonl: the round and the student's steps on every line; an evaluation of each
  // round's student at its end (train.eval_every 100 is never reached otherwise).
  std::ifstream metrics(run() / "metrics.jsonl");
  std::string line;
  int losses = 0;
  std::vector<int> evaluated;
  while (std::getline(metrics, line)) {
    const auto entry = nlohmann::json::parse(line);
    const int step = entry["step"].get<int>();
    EXPECT_EQ(entry["round"], step <= 4 ? 1 : 2) << line;
    EXPECT_EQ(entry["student_steps"], step <= 4 ? 4 : 2) << line;
    if (entry.contains("loss")) ++losses;
    if (entry.contains("fid")) evaluated.push_back(step);
  }
  EXPECT_EQ(losses, 8);
  EXPECT_EQ(evaluated, (std::vector<int>{4, 8}));
  // The 8-step teacher grid 999 874 749 ... halves to 999 749 499 249, then to 999 499.
  auto sampled = run_ddpm("sample --checkpoint " + (run() / "rounds" / "steps_004").string() +
                          " --num 2 --device cpu --out " + file("s4").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_CONTAINS(sampled.output, "ddim, 4 steps (trailing spacing");
  EXPECT_CONTAINS(sampled.output, "timesteps 999 749 499 249\n");
  EXPECT_EQ(sampled.output.find("distilled for"), std::string::npos) << sampled.output;
  sampled = run_ddpm("sample --checkpoint " + run().string() + " --num 2 --device cpu --out " +
                     file("s2").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_CONTAINS(sampled.output, "timesteps 999 499\n");
  EXPECT_TRUE(fs::exists(file("s2") / "sample_00001.png"));
  // Off its grid: a warning, and the images all the same.
  sampled = run_ddpm("sample --checkpoint " + (run() / "rounds" / "steps_004").string() +
                     " --num 1 --steps 8 --device cpu --out " + file("s8").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_CONTAINS(sampled.output, "distilled for ddim, 4 steps, trailing spacing");
}

TEST_F(DistillCli, ARunResumedMidRoundEndsBitForBitWhereTheUninterruptedOneDid) {
  ASSERT_EQ(first_run_->exit_code, 0) << first_run_->output;
  // Step 2: mid-round 1 (the teacher is the shipped model); step 6: mid-round 2 (the teacher is
  // round 1's student, from the checkpoint).
  for (const int step : {2, 6}) {
    const fs::path copy = interrupted_copy("resumed_" + std::to_string(step), step);
    const auto resumed = run_ddpm("distill --out " + copy.string() + " --resume --threads 1");
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_CONTAINS(resumed.output, "resumed from");
    expect_same_weights(run(), copy);
    expect_same_weights(run() / "rounds" / "steps_002", copy / "rounds" / "steps_002");
    expect_same_weights(run() / "rounds" / "steps_004", copy / "rounds" / "steps_004");
  }
}

TEST_F(DistillCli, AStudentExportsAsADiffusersDdimPipeline) {
  ASSERT_EQ(first_run_->exit_code, 0) << first_run_->output;
  const fs::path out = file("exported");
  const auto exported = run_ddpm("export --checkpoint " +
                                 (run() / "rounds" / "steps_002").string() + " --out " +
                                 out.string());
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  const nlohmann::json scheduler = json_of(out / "scheduler" / "scheduler_config.json");
  EXPECT_EQ(scheduler["_class_name"], "DDIMScheduler");
  EXPECT_EQ(scheduler["timestep_spacing"], "trailing");
  EXPECT_EQ(scheduler["set_alpha_to_one"], true);
  EXPECT_EQ(scheduler["_ddpm_sample_steps"], 2);
  EXPECT_EQ(json_of(out / "model_index.json")["_class_name"], "DDIMPipeline");
  const auto sampled = run_ddpm("sample --checkpoint " + out.string() +
                                " --num 1 --device cpu --out " + file("from_export").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_CONTAINS(sampled.output, "timesteps 999 499\n");
}

TEST_F(DistillCli, RefusesImpossibleRequestsBeforeAnyWork) {
  const std::string data = " --data " + images().string();
  auto result = run_ddpm("distill --out " + file("r1").string() + data);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "needs --teacher");
  result = run_ddpm("distill --teacher " + kModel + data);
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "needs --out");
  result = run_ddpm("distill --teacher " + kModel + data + " --out " + file("r2").string() +
                    " --set distill.start_steps=12");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "distill.start_steps");
  result = run_ddpm("distill --teacher " + kModel + data + " --out " + file("r3").string() +
                    " --guidance 3");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "distill.guidance");
  result = run_ddpm("distill --teacher " + kModel + data + " --out " + file("r4").string() +
                    " --set model.base_channels=64");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "model.base_channels");
  result = run_ddpm("distill --teacher " + file("missing.pt").string() + data + " --out " +
                    file("r5").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "missing.pt");
  for (const char* name : {"r1", "r2", "r3", "r4", "r5"}) EXPECT_FALSE(fs::exists(file(name)));
  // A distillation's config is not ddpm train's, and a train run is not distill --resume's.
  ASSERT_EQ(first_run_->exit_code, 0) << first_run_->output;
  result = run_ddpm("train --config " + (run() / "config.json").string() + " --out " +
                    file("r6").string());
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "run it with ddpm distill");
  result = run_ddpm("distill --out " + run().string() + " --resume --config " +
                    (run() / "config.json").string());
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_CONTAINS(result.output, "drop --config");
}

}  // namespace
}  // namespace ddpm
