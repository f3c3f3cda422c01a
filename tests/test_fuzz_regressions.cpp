// Every input kept for the fuzz targets (tests/fuzz/fuzz_targets.h): the seeds, and the inputs
// with which the fuzzers found bugs, through the same entry as the libFuzzer executables, in
// every build (no clang needed). Each must give a result or a ddpm::Error, never another
// exception or a crash; a file named valid_* must give a result, but for those a target
// refuses by design (FuzzTarget::refused_valid_inputs), which must give a ddpm::Error.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ddpm/error.h"
#include "fuzz/fuzz_targets.h"
#include "image_codecs.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

std::string file_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// A build without libwebp and libtiff (carried dependencies) refuses those files by design.
bool refused_by_this_build(const std::string& name) {
#if DDPM_WITH_WEBP && DDPM_WITH_TIFF
  (void)name;
  return false;
#else
  return name.ends_with(".webp") || name.ends_with(".tif");
#endif
}

class FuzzRegressions : public ::testing::TestWithParam<fuzz::FuzzTarget> {};

TEST_P(FuzzRegressions, EveryKeptInputGivesAResultOrADdpmError) {
  const fuzz::FuzzTarget& target = GetParam();
  int inputs = 0;
  for (const char* folder : target.input_folders) {
    for (const auto& entry : fs::directory_iterator(fs::path(DDPM_SOURCE_DIR) / folder)) {
      ++inputs;
      const std::string name = entry.path().filename().string();
      const bool refused_by_design =
          std::find(target.refused_valid_inputs.begin(), target.refused_valid_inputs.end(),
                    name) != target.refused_valid_inputs.end() ||
          refused_by_this_build(name);
      try {
        target.run(file_bytes(entry.path()));
        EXPECT_FALSE(refused_by_design) << entry.path() << ": read, but should be refused";
      } catch (const Error& error) {
        EXPECT_TRUE(!name.starts_with("valid_") || refused_by_design)
            << entry.path() << ": " << error.what();
      } catch (const std::exception& error) {
        ADD_FAILURE() << entry.path() << ": not a ddpm::Error: " << error.what();
      }
    }
  }
  EXPECT_GE(inputs, 2) << target.name;
}

INSTANTIATE_TEST_SUITE_P(EveryTarget, FuzzRegressions,
                         ::testing::ValuesIn(fuzz::fuzz_targets()),
                         [](const ::testing::TestParamInfo<fuzz::FuzzTarget>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace ddpm
