// The `ddpm` binary end to end: exit codes, help texts with the real defaults, error messages.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace {

struct Result {
  int exit_code;
  std::string output;  // standard output and standard error together
};

Result run(const std::string& arguments) {
  const std::string command = std::string(DDPM_BINARY) + " " + arguments + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  Result result{-1, ""};
  std::array<char, 4096> buffer;
  while (size_t read = std::fread(buffer.data(), 1, buffer.size(), pipe)) {
    result.output.append(buffer.data(), read);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string config_path(const std::string& name) {
  return std::string(DDPM_SOURCE_DIR) + "/configs/" + name;
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE((haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(Cli, VersionAndHelp) {
  const auto version = run("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_CONTAINS(version.output, "ddpm " DDPM_VERSION);
  const auto help = run("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_CONTAINS(help.output, "info");
  EXPECT_CONTAINS(help.output, "config");
  EXPECT_EQ(run("").exit_code, 2);
}

TEST(Cli, CommandHelpPrintsTheRealDefaults) {
  const auto help = run("info --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_CONTAINS(help.output, "--config");
  EXPECT_CONTAINS(help.output, "--set");
  EXPECT_CONTAINS(help.output, "train.lr = 0.0002");
  EXPECT_CONTAINS(help.output, "diffusion.schedule = \"linear\"");
}

TEST(Cli, InfoReportsTheCifar10Model) {
  const auto info = run("info --config " + config_path("cifar10.json"));
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_CONTAINS(info.output, "35,746,307");
  // One forward pass of the CIFAR-10 UNet is about 12.4 GFLOP (6.2 G multiply-adds).
  EXPECT_CONTAINS(info.output, "12.4");
  EXPECT_CONTAINS(info.output, "alpha_bar[t =  999] = 4.03583e-05");
}

TEST(Cli, InfoJsonIsMachineReadable) {
  const auto info = run("info --json --config " + config_path("tiny.json"));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_CONTAINS(info.output, "\"parameters\": 176849");
  EXPECT_CONTAINS(info.output, "\"forward_gflops_per_image\"");
}

TEST(Cli, ConfigErrorsExitWithTwoAndNameTheKey) {
  const auto unknown = run("info --config " + config_path("tiny.json") + " --set train.lrr=1");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_CONTAINS(unknown.output, "train.lrr");
  EXPECT_CONTAINS(unknown.output, "did you mean 'lr'?");
  const auto wrong = run("config --set diffusion.timesteps=0");
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_CONTAINS(wrong.output, "diffusion.timesteps");
  const auto missing = run("info --config /nonexistent/config.json");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_CONTAINS(missing.output, "/nonexistent/config.json");
  const auto command = run("inof");
  EXPECT_EQ(command.exit_code, 2);
  EXPECT_CONTAINS(command.output, "did you mean 'info'?");
  const auto option = run("info --bogus");
  EXPECT_EQ(option.exit_code, 2);
  EXPECT_CONTAINS(option.output, "bogus");
  const auto threads = run("info --threads 0");
  EXPECT_EQ(threads.exit_code, 2);
}

TEST(Cli, ResolvedConfigReadsBackToTheSameConfig) {
  const auto first = run("config --config " + config_path("fashion_mnist.json") +
                         " --set model.channel_mult=[1,2] --set data.image_size=[28,56]");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const auto file = std::filesystem::temp_directory_path() /
                    ("ddpm_resolved_" + std::to_string(::getpid()) + ".json");
  std::ofstream(file) << first.output;
  const auto second = run("config --config " + file.string());
  std::filesystem::remove(file);
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(first.output, second.output);
  EXPECT_CONTAINS(first.output, "\"image_size\": [\n      28,\n      56\n    ]");
}

}  // namespace
