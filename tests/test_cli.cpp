// The `ddpm` binary end to end: exit codes, help texts with the real defaults, error messages.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace {

using ddpm::testing::run_ddpm;

std::string config_path(const std::string& name) {
  return std::string(DDPM_SOURCE_DIR) + "/configs/" + name;
}

TEST(Cli, VersionAndHelp) {
  const auto version = run_ddpm("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_CONTAINS(version.output, "ddpm " DDPM_VERSION);
  const auto help = run_ddpm("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_CONTAINS(help.output, "info");
  EXPECT_CONTAINS(help.output, "config");
  EXPECT_EQ(run_ddpm("").exit_code, 2);
}

TEST(Cli, CommandHelpPrintsTheRealDefaults) {
  const auto help = run_ddpm("info --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_CONTAINS(help.output, "--config");
  EXPECT_CONTAINS(help.output, "--set");
  EXPECT_CONTAINS(help.output, "train.lr = 0.0002");
  EXPECT_CONTAINS(help.output, "diffusion.schedule = \"linear\"");
}

TEST(Cli, InfoReportsTheCifar10Model) {
  const auto info = run_ddpm("info --config " + config_path("cifar10.json"));
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_CONTAINS(info.output, "35,746,307");
  // One forward pass of the CIFAR-10 UNet is about 12.4 GFLOP (6.2 G multiply-adds).
  EXPECT_CONTAINS(info.output, "12.4");
  EXPECT_CONTAINS(info.output, "alpha_bar[t =  999] = 4.03583e-05");
}

TEST(Cli, InfoJsonIsMachineReadable) {
  const auto info = run_ddpm("info --json --config " + config_path("tiny.json"));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_CONTAINS(info.output, "\"parameters\": 176849");
  EXPECT_CONTAINS(info.output, "\"forward_gflops_per_image\"");
}

TEST(Cli, ConfigErrorsExitWithTwoAndNameTheKey) {
  const auto unknown = run_ddpm("info --config " + config_path("tiny.json") + " --set train.lrr=1");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_CONTAINS(unknown.output, "train.lrr");
  EXPECT_CONTAINS(unknown.output, "did you mean 'lr'?");
  const auto wrong = run_ddpm("config --set diffusion.timesteps=0");
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_CONTAINS(wrong.output, "diffusion.timesteps");
  const auto missing = run_ddpm("info --config /nonexistent/config.json");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_CONTAINS(missing.output, "/nonexistent/config.json");
  const auto command = run_ddpm("inof");
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_CONTAINS(command.output, "did you mean 'info'?");
  const auto option = run_ddpm("info --bogus");
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_CONTAINS(option.output, "bogus");
  const auto threads = run_ddpm("info --threads 0");
  EXPECT_EQ(threads.exit_code, 2);
}

TEST(Cli, BenchWritesTheFiguresScriptsRelyOn) {
  const auto file = std::filesystem::temp_directory_path() /
                    ("ddpm_bench_" + std::to_string(::getpid()) + ".json");
  const std::string common = "bench --config " + config_path("tiny.json") +
                             " --batch 2 --steps 2 --warmup 1 --json " + file.string();
  const auto train = run_ddpm(common + " --mode train --peak-tflops 1");
  ASSERT_EQ(train.exit_code, 0) << train.output;
  auto json = nlohmann::json::parse(std::ifstream(file));
  EXPECT_GT(json["train_images_per_s"].get<double>(), 0.0);
  EXPECT_GT(json["peak_memory_bytes"].get<int64_t>(), 0);
  // mfu = 3 x forward FLOPs x images/s / peak.
  EXPECT_NEAR(json["mfu"].get<double>(),
              3 * json["forward_gflops_per_image"].get<double>() * 1e9 *
                  json["train_images_per_s"].get<double>() / 1e12,
              1e-12);
  const auto sample = run_ddpm(common + " --mode sample --sampler ddim --chain-steps 10");
  ASSERT_EQ(sample.exit_code, 0) << sample.output;
  json = nlohmann::json::parse(std::ifstream(file));
  std::filesystem::remove(file);
  EXPECT_GT(json["sample_images_per_s"].get<double>(), 0.0);
  EXPECT_EQ(json["chain_steps"].get<int>(), 10);
  EXPECT_EQ(run_ddpm("bench --config " + config_path("tiny.json") + " --device cpu --precision fp8")
                .exit_code,
            2);
  EXPECT_EQ(run_ddpm("bench --mode fly").exit_code, 2);
}

TEST(Cli, ResolvedConfigReadsBackToTheSameConfig) {
  const auto first = run_ddpm("config --config " + config_path("fashion_mnist.json") +
                         " --set model.channel_mult=[1,2] --set data.image_size=[28,56]");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto file = std::filesystem::temp_directory_path() /
                    ("ddpm_resolved_" + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << first.output;
  const auto second = run_ddpm("config --config " + file.string());
  std::filesystem::remove(file);
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(first.output, second.output);
  EXPECT_CONTAINS(first.output, "\"image_size\": [\n      28,\n      56\n    ]");
}

}  // namespace
