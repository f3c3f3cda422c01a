// `ddpm train` and `ddpm sample` end to end through the binary: configs/tiny.json on a
// generated image folder, sampling from its checkpoint, PNG metadata, refusal to overwrite, batch-size
// independence, and SIGTERM handling.
#include <gtest/gtest.h>

#include <torch/cuda.h>

#include <fstream>
#include <tuple>
#include <vector>

#include "formats/checkpoint.h"
#include "formats/image_io.h"
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
  // The shipped tiny config, four steps, on the generated folder (or on `data`), by default on
  // the CPU: exact, and with the step times that the signal tests count on.
  std::string tiny(const std::string& data = "", const std::string& device = "cpu") const {
    return "--config " + std::string(DDPM_SOURCE_DIR) + "/configs/tiny.json --data " +
           (data.empty() ? (temp_.path() / "images").string() : data) +
           " --set train.steps=4 --set train.log_every=1 --set train.device=" + device + " ";
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
                             " --sampler ddim --steps 5 --num 3 --seed 11 --device cpu ";
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
  // An unconditional model: no class metadata, and class options are refused before sampling.
  EXPECT_EQ(read_png_text(path("out") / "sample_00000.png").count("class"), 0u);
  for (const std::string& option : {"--class 3", "--guidance 2"}) {
    const auto refused = run_ddpm(sample + option + " --out " + path("refused").string());
    EXPECT_EQ(refused.exit_code, 2) << option;
    EXPECT_CONTAINS(refused.output, "unconditional");
    EXPECT_FALSE(std::filesystem::exists(path("refused") / "sample_00000.png"));
  }

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

// Every sampler through the CLI: --list-samplers, the NFE in the log and in each PNG's metadata,
// and the refusals of settings a sampler cannot run, before anything is written.
TEST_F(TrainAndSample, FastSamplersRecordTheirCostAndRefuseWhatTheyCannotRun) {
  const auto trained = run_ddpm("train " + tiny() + "--out " + path("run").string());
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const auto listed = run_ddpm("sample --list-samplers");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  for (const std::string name :
       {"ddpm", "ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "2N-1"}) {
    EXPECT_CONTAINS(listed.output, name);
  }
  const std::string sample =
      "sample --checkpoint " + path("run").string() + " --num 2 --device cpu ";
  for (const auto& [sampler, steps, spacing, nfe] :
       std::vector<std::tuple<std::string, int, std::string, int>>{
           {"heun", 3, "karras", 5},
           {"dpmpp_2m_sde", 4, "linspace", 4},
           {"euler", 2, "trailing", 2}}) {
    const auto out = path("out_" + sampler);
    const auto sampled = run_ddpm(sample + "--sampler " + sampler + " --steps " +
                                  std::to_string(steps) + " --spacing " + spacing + " --out " +
                                  out.string());
    ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
    EXPECT_CONTAINS(sampled.output, std::to_string(nfe) + " network evaluations per image");
    const auto text = read_png_text(out / "sample_00001.png");
    EXPECT_EQ(text.at("sampler"), sampler);
    EXPECT_EQ(text.at("steps"), std::to_string(steps));
    EXPECT_EQ(text.at("nfe"), std::to_string(nfe));
    EXPECT_EQ(text.at("spacing"), spacing);
    EXPECT_EQ(text.count("eta"), 0u);
  }
  // The checkpoint's sample section says dpmpp_2m with karras spacing (configs/tiny.json):
  // --sampler ddim takes uniform instead, and says so; an explicit --spacing karras is refused.
  const auto ddim = run_ddpm(sample + "--sampler ddim --steps 3 --out " + path("ddim").string());
  ASSERT_EQ(ddim.exit_code, 0) << ddim.output;
  EXPECT_CONTAINS(ddim.output, "does not suit ddim; using uniform");
  EXPECT_EQ(read_png_text(path("ddim") / "sample_00000.png").at("spacing"), "uniform");
  for (const auto& [flags, key] : std::vector<std::pair<std::string, std::string>>{
           {"--sampler ddim --spacing karras", "sample.spacing"},
           {"--sampler euler --eta 0.5", "sample.eta"},
           {"--sampler dpmpp_2m --spacing leading --steps 1000", "sample.steps"},
           {"--sampler dpm++", "sample.sampler"}}) {
    const auto refused = run_ddpm(sample + flags + " --out " + path("refused").string());
    EXPECT_EQ(refused.exit_code, 2) << flags;
    EXPECT_CONTAINS(refused.output, key);
    EXPECT_FALSE(std::filesystem::exists(path("refused") / "sample_00000.png")) << flags;
  }
}

// The GPU path end to end: bf16 training, a resumed run, DDPM sampling, all on CUDA.
TEST_F(TrainAndSample, CudaTrainsResumesAndSamples) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string run_dir = path("cuda").string();
  const auto trained = run_ddpm("train " + tiny("", "cuda") + "--out " + run_dir +
                                " --set train.precision=bf16 --set train.checkpoint_every=2");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_CONTAINS(trained.output, "training on cuda");
  const auto resumed = run_ddpm("train --out " + run_dir + " --resume --set train.steps=6");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(load_checkpoint(resolve_checkpoint(run_dir)).step, 6);
  const auto sampled = run_ddpm("sample --checkpoint " + run_dir + " --device cuda --sampler ddpm "
                                "--steps 1000 --num 3 --seed 5 --out " + path("cuda_out").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  for (int i = 0; i < 3; ++i) {
    const auto file = path("cuda_out") / ("sample_0000" + std::to_string(i) + ".png");
    EXPECT_EQ(read_image(file, 1).height, 28) << file;
  }
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

// Starts a long `ddpm train` in the background under `timeout` (a bound should the signals be
// ignored), waits until the file `wait_for` is non-empty, then runs `signals` with the process id
// of `timeout` in $pid; writes the exit status to `exit` and the output to `log`.
// `timeout --foreground` passes each signal on to ddpm once; plain `timeout` passes the first
// one on twice (to ddpm, then to its process group) and ignores later ones.
std::string signalled_train(const std::string& timeout, const std::string& train_arguments,
                            const std::filesystem::path& wait_for, const std::string& signals,
                            const std::filesystem::path& log, const std::filesystem::path& exit) {
  return timeout + " -s KILL 120 " + std::string(DDPM_BINARY) + " train " + train_arguments + " > " +
         log.string() + " 2>&1 & pid=$!; for i in $(seq 1200); do [ -s " + wait_for.string() +
         " ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done; " + signals + "; wait $pid; echo $? > " + exit.string();
}

TEST_F(TrainAndSample, SigtermFinishesTheStepWritesACheckpointAndExits130) {
  // SIGTERM to `timeout`, which passes it on twice: to ddpm, then to its process group.
  const auto run_dir = path("long");
  const std::string command = signalled_train(
      "timeout",
      tiny() + "--out " + run_dir.string() +
          " --set train.steps=1000000 --set train.checkpoint_every=1000000",
      run_dir / "metrics.jsonl", "kill -TERM $pid", path("log.txt"), path("exit.txt"));
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

TEST_F(TrainAndSample, ASecondTrainerOnTheSameRunDirectoryIsRefusedNamingTheFirst) {
  // The first trainer runs (checkpoint every step) until it is killed with SIGKILL, which leaves
  // its lock file behind; meanwhile a second one on the same directory is refused.
  const auto run_dir = path("shared");
  const std::string second = std::string(DDPM_BINARY) + " train " + tiny() + "--out " +
                             run_dir.string() + " --set train.steps=1000000 > " +
                             path("second.txt").string() + " 2>&1; echo $? > " +
                             path("second_exit.txt").string();
  const std::string command = signalled_train(
      "timeout",
      tiny() + "--out " + run_dir.string() +
          " --set train.steps=1000000 --set train.checkpoint_every=1",
      run_dir / "metrics.jsonl",
      second + "; holder=$(sed -n 's/.* pid //p' " + (run_dir / "train.lock").string() +
          "); echo $holder > " + path("holder.txt").string() + "; kill -KILL $holder",
      path("log.txt"), path("exit.txt"));
  ASSERT_EQ(std::system(command.c_str()), 0);
  EXPECT_EQ(read_text(path("second_exit.txt")), "2\n") << read_text(path("second.txt"));
  const std::string refusal = read_text(path("second.txt"));
  EXPECT_CONTAINS(refusal, "is in use by another ddpm train");
  EXPECT_CONTAINS(refusal, "pid ");
  EXPECT_CONTAINS(refusal, "train.lock");
  // The holder named is the first trainer (`timeout`'s child), which SIGKILL then ended.
  const std::string holder = read_text(path("holder.txt"));
  ASSERT_GT(holder.size(), 1u);
  EXPECT_CONTAINS(refusal, "pid " + holder.substr(0, holder.size() - 1) + ",");
  EXPECT_EQ(read_text(path("exit.txt")), "137\n") << read_text(path("log.txt"));
  EXPECT_TRUE(std::filesystem::exists(run_dir / "train.lock"));

  // The killed trainer's lock file is still there, but nobody holds it: --resume goes on.
  const TrainingState state = load_checkpoint(resolve_checkpoint(run_dir));
  const auto resumed = run_ddpm("train --out " + run_dir.string() + " --resume --set train.steps=" +
                                std::to_string(state.step + 1));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(load_checkpoint(resolve_checkpoint(run_dir)).step, state.step + 1);
}

// Steps of batch 256 take over a second on two CPU threads, and of batch 512 about three, so
// each signal below lands within the step after the first.
TEST_F(TrainAndSample, ASignalRepeatedWithinASecondIsTheSameRequest) {
  testing::write_image_folder(path("many"), 256, 28, 28);
  const auto run_dir = path("repeated");
  const std::string command = signalled_train(
      "timeout --foreground", tiny(path("many").string()) + "--out " + run_dir.string() +
          " --set train.steps=1000000 --set train.checkpoint_every=1000000 "
          "--set train.batch_size=256 --threads 2",
      run_dir / "metrics.jsonl", "kill -TERM $pid; sleep 0.3; kill -INT $pid", path("log.txt"),
      path("exit.txt"));
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string log = read_text(path("log.txt"));
  EXPECT_EQ(read_text(path("exit.txt")), "130\n") << log;
  EXPECT_CONTAINS(log, "--resume");
  EXPECT_EQ(log.find("quitting now"), std::string::npos) << log;
  EXPECT_GE(load_checkpoint(resolve_checkpoint(run_dir)).step, 2);
}

TEST_F(TrainAndSample, ASecondSignalASecondLaterQuitsAtOnce) {
  testing::write_image_folder(path("many"), 512, 28, 28);
  const auto run_dir = path("quit");
  const std::string command = signalled_train(
      "timeout --foreground", tiny(path("many").string()) + "--out " + run_dir.string() +
          " --set train.steps=1000000 --set train.checkpoint_every=1000000 "
          "--set train.batch_size=512 --threads 2",
      run_dir / "metrics.jsonl", "kill -TERM $pid; sleep 1.3; kill -TERM $pid", path("log.txt"),
      path("exit.txt"));
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string log = read_text(path("log.txt"));
  EXPECT_EQ(read_text(path("exit.txt")), "130\n") << log;
  EXPECT_CONTAINS(log, "quitting now");
  EXPECT_FALSE(std::filesystem::exists(run_dir / "checkpoints" / "latest")) << log;
}

}  // namespace
}  // namespace ddpm
