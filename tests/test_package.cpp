// The installed package as a product uses it: `cmake --install` into a temporary prefix, then
// examples/train and examples/generate configured and built as separate CMake projects with
// find_package(ddpm) against that prefix. The train example trains a tiny model; the generate
// example samples it into memory and writes PGMs with its own code, whose pixels must equal
// those of the installed `ddpm sample` for the same seed.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "formats/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string quoted(const fs::path& path) { return "'" + path.string() + "'"; }

// Configures and builds one example with this CMAKE_PREFIX_PATH; returns its binary.
fs::path build_example(const std::string& name, const std::string& prefix_path,
                       const fs::path& work) {
  const fs::path build = work / ("build-" + name);
  const auto configure = testing::run_command(
      std::string("'") + DDPM_CMAKE_COMMAND + "' -S " +
      quoted(fs::path(DDPM_SOURCE_DIR) / "examples" / name) + " -B " + quoted(build) + " -G '" +
      DDPM_CMAKE_GENERATOR + "' -DCMAKE_MAKE_PROGRAM='" + DDPM_CMAKE_MAKE_PROGRAM +
      "' -DCMAKE_CXX_COMPILER='" + DDPM_CXX_COMPILER + "' -DCMAKE_PREFIX_PATH='" + prefix_path +
      "'");
  EXPECT_EQ(configure.exit_code, 0) << configure.output;
  const auto compile = testing::run_command(std::string("'") + DDPM_CMAKE_COMMAND +
                                            "' --build " + quoted(build));
  EXPECT_EQ(compile.exit_code, 0) << compile.output;
  return build / name;
}

// The bytes after a binary PGM's header ("P5\nW H\n255\n").
std::vector<uint8_t> pgm_pixels(const fs::path& file, int& width, int& height) {
  std::ifstream in(file, std::ios::binary);
  std::string magic;
  int max_value = 0;
  in >> magic >> width >> height >> max_value;
  in.get();
  EXPECT_EQ(magic, "P5") << file;
  EXPECT_EQ(max_value, 255) << file;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(InstalledPackage, ExamplesBuildAgainstItAndMatchTheCli) {
  TempDir temp("package");
  const fs::path prefix = temp.path() / "prefix";
  const auto install = testing::run_command(std::string("'") + DDPM_CMAKE_COMMAND +
                                            "' --install '" + DDPM_BUILD_DIR + "' --prefix " +
                                            quoted(prefix));
  ASSERT_EQ(install.exit_code, 0) << install.output;
  // What a product gets: the binary, the library, the public headers, the package; no internals.
  for (const char* file : {"bin/ddpm", "include/ddpm/ddpm.h", "include/ddpm/ddpm_tensor.h",
                           "include/ddpm/error.h", "lib/cmake/ddpm/ddpm-config.cmake",
                           "lib/cmake/ddpm/ddpm-config-version.cmake"}) {
    EXPECT_TRUE(fs::exists(prefix / file)) << file;
  }
  EXPECT_TRUE(fs::exists(prefix / "lib" / (DDPM_LIBRARY_SHARED ? "libddpm.so" : "libddpm.a")));
  EXPECT_FALSE(fs::exists(prefix / "include/ddpm/unet.h")) << "an internal header is installed";
  const auto version = testing::run_command(quoted(prefix / "bin/ddpm") + " --version");
  EXPECT_EQ(version.output, std::string("ddpm ") + DDPM_VERSION + "\n");
  EXPECT_CONTAINS(testing::read_text(prefix / "lib/cmake/ddpm/ddpm-config-version.cmake"),
                  std::string("\"") + DDPM_VERSION + "\"");

  // Both ways docs/LIBRARY.md names to find LibTorch: the package finds it by itself (through
  // Python's torch), or CMAKE_PREFIX_PATH names torch.utils.cmake_prefix_path beside the prefix
  // (with a pip CUDA torch, that path too must find pip's CUDA libraries).
  const fs::path train = build_example("train", prefix.string(), temp.path());
  const fs::path generate = build_example(
      "generate", prefix.string() + ";" + DDPM_TORCH_CMAKE_PREFIX, temp.path());
  ASSERT_TRUE(fs::exists(train) && fs::exists(generate));

  testing::write_image_folder(temp.path() / "images", 16, 8, 8);
  std::ofstream(temp.path() / "config.json")
      << testing::small_train_config(temp.path() / "images", 3);
  const fs::path run = temp.path() / "run";
  const auto trained = testing::run_command(quoted(train) + " " +
                                            quoted(temp.path() / "config.json") + " " +
                                            quoted(temp.path() / "images") + " " + quoted(run) +
                                            " 4");
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_CONTAINS(trained.output, "step 4/4 loss ");
  EXPECT_CONTAINS(trained.output, "trained to step 4");

  fs::create_directories(temp.path() / "generated");
  const auto generated = testing::run_command(quoted(generate) + " " + quoted(run) + " " +
                                              quoted(temp.path() / "generated") + " 3 21");
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  EXPECT_CONTAINS(generated.output, std::string("ddpm ") + DDPM_VERSION + ": wrote 3 images");
  const auto sampled = testing::run_command(
      quoted(prefix / "bin/ddpm") + " sample --checkpoint " + quoted(run) + " --out " +
      quoted(temp.path() / "sampled") + " --num 3 --seed 21 --device cpu");
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  for (int k = 0; k < 3; ++k) {
    char pgm[32], png[32];
    std::snprintf(pgm, sizeof pgm, "image_%05d.pgm", k);
    std::snprintf(png, sizeof png, "sample_%05d.png", k);
    int width = 0, height = 0;
    const std::vector<uint8_t> pixels = pgm_pixels(temp.path() / "generated" / pgm, width, height);
    const Image reference = read_image(temp.path() / "sampled" / png, 1);
    EXPECT_EQ(width, reference.width);
    EXPECT_EQ(height, reference.height);
    EXPECT_EQ(pixels, reference.pixels) << "image " << k;
  }

  // A bad input reaches the program as ddpm::Error, with the CLI's message and exit code.
  const auto missing = testing::run_command(quoted(generate) + " " +
                                            quoted(temp.path() / "none.pt") + " " +
                                            quoted(temp.path()));
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_CONTAINS(missing.output, "none.pt");
}

}  // namespace
}  // namespace ddpm
