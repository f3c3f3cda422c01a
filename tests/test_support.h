// Helpers shared by the tests: a temporary folder, a generated image folder, and running the
// ddpm binary as a child process.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "config/config.h"
#include "eval/feature_net.h"

namespace ddpm::testing {

// A fresh folder under the system's temp directory, removed when the object goes away.
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Writes `count` grayscale PNGs of height x width with smooth, varied patterns.
void write_image_folder(const std::filesystem::path& folder, int count, int height, int width);

// The message of the ddpm::Error that `action` throws, or "(no error)".
std::string error_of(const std::function<void()>& action);

// The whole content of a file ("" when it cannot be read).
std::string read_text(const std::filesystem::path& file);
// The files under `folder` (recursively) whose names say a write did not finish: NAME.tmp.PID,
// as write_file_atomically leaves them when it is killed.
std::vector<std::string> temporary_files(const std::filesystem::path& folder);
// A TorchScript feature network with the TorchScript `forward_source` (a `def forward(self, x)`)
// and, when `declare_input`, the input attributes of feature_net.h.
void write_feature_net(const std::filesystem::path& path, const std::string& forward_source,
                       FeatureNetInput input = {1, 8, 8}, bool declare_input = true);
// 1x8x8 images -> the means of their 16 2x2 blocks.
inline constexpr const char* kBlockMeansForward =
    "def forward(self, x):\n"
    "  return x.reshape(x.size(0), 4, 2, 4, 2).mean([2, 4]).flatten(1)\n";

struct CommandResult {
  int exit_code = -1;   // -1 when killed by a signal
  std::string output;   // standard output and standard error together
};

// Runs a shell command and waits for it.
CommandResult run_command(const std::string& command);
// Runs `ddpm ARGUMENTS` through the shell and waits for it.
CommandResult run_ddpm(const std::string& arguments);

// A TCP port on 127.0.0.1 that was free a moment ago (the system picks it).
int free_port();

// A spacing by its sample.spacing name (test tables keep the names users write).
inline Spacing spacing_named(const std::string& name) {
  return choice_from_name<Spacing>(name, "sample.spacing");
}

// A small UNet (16 channels, 2 levels, attention at 8) for `channels` x size x size images.
ModelConfig small_model_config();
DataConfig image_config(int channels, int height, int width);

// A small training config for 8x8 grayscale images (runs in well under a second per step).
std::string small_train_config(const std::filesystem::path& data, int steps);

}  // namespace ddpm::testing

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)
