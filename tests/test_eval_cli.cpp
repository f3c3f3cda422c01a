// `ddpm eval` end to end, with a small TorchScript feature network made by the test.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ddpm/dataset.h"
#include "ddpm/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::run_ddpm;
using testing::TempDir;

class EvalCli : public ::testing::Test {
 protected:
  EvalCli() : dir_("eval_cli") {}
  void SetUp() override {
    net_ = dir_.path() / "net.pt";
    testing::write_feature_net(net_, testing::kBlockMeansForward);
  }

  std::string eval(const std::string& real, const std::string& generated,
                   const std::string& extra = "") {
    return "eval --real " + real + " --generated " + generated + " --features " + net_.string() +
           " --threads 2 --kid-subsets 10 " + extra;
  }
  nlohmann::json read_json(const fs::path& path) {
    std::ifstream in(path);
    return nlohmann::json::parse(in);
  }

  TempDir dir_;
  fs::path net_;
};

TEST_F(EvalCli, IdenticalFoldersAndReusedStats) {
  const fs::path images = dir_.path() / "images";
  testing::write_image_folder(images, 24, 8, 8);
  const fs::path stats = dir_.path() / "real_stats.pt", json = dir_.path() / "result.json";
  const std::string outputs = "--save-real-stats " + stats.string() + " --json " + json.string();
  const auto first = run_ddpm(eval(images.string(), images.string(), outputs));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const nlohmann::json result = read_json(json);
  EXPECT_NEAR(result["fid"].get<double>(), 0.0, 1e-6);
  EXPECT_EQ(result["precision"].get<double>(), 1.0);
  EXPECT_EQ(result["recall"].get<double>(), 1.0);
  EXPECT_EQ(result["num_real"], 24);
  EXPECT_EQ(result["num_generated"], 24);
  EXPECT_EQ(result["feature_dim"], 16);
  EXPECT_EQ(result["features_file"], net_.string());
  EXPECT_EQ(result["kid_subset_size"], 24);
  EXPECT_TRUE(result["kid_std"].is_number());
  EXPECT_CONTAINS(first.output, "fid");
  ASSERT_TRUE(fs::exists(stats));

  // The stats file instead of the folder: the very same numbers.
  const fs::path json_again = dir_.path() / "again.json";
  const auto reused =
      run_ddpm(eval(stats.string(), images.string(), "--json " + json_again.string()));
  ASSERT_EQ(reused.exit_code, 0) << reused.output;
  const nlohmann::json again = read_json(json_again);
  for (const char* key : {"fid", "kid_mean", "kid_std", "precision", "recall", "num_real"}) {
    EXPECT_EQ(again[key], result[key]) << key;
  }

  // Existing outputs are never replaced without --overwrite, and nothing is computed first.
  const auto refused = run_ddpm(eval(images.string(), images.string(), "--json " + json.string()));
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_CONTAINS(refused.output, "pass --overwrite");
  const auto replaced = run_ddpm(eval(images.string(), images.string(),
                                      "--metrics fid --overwrite --json " + json.string()));
  EXPECT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_TRUE(read_json(json)["kid_mean"].is_null());

  // Stats of another network are refused.
  const fs::path other = dir_.path() / "other.pt";
  testing::write_feature_net(other, "def forward(self, x):\n  return x.flatten(1)[:, :16]\n");
  const auto mismatch = run_ddpm("eval --real " + stats.string() + " --generated " +
                                 images.string() + " --features " + other.string());
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_CONTAINS(mismatch.output, "features of different networks cannot be compared");
}

// `count` 8x8 gray PNGs of independent uniform random pixels: one distribution, i.i.d. images.
void write_random_images(const fs::path& folder, int count, uint64_t seed) {
  fs::create_directories(folder);
  torch::manual_seed(seed);
  for (int index = 0; index < count; ++index) {
    const torch::Tensor pixels = torch::randint(0, 256, {8 * 8}, torch::kUInt8);
    Image image{8, 8, 1, std::vector<uint8_t>(pixels.data_ptr<uint8_t>(),
                                              pixels.data_ptr<uint8_t>() + pixels.numel())};
    write_png(folder / ("random_" + std::to_string(index) + ".png"), image);
  }
}

TEST_F(EvalCli, KidIsNearZeroOnTwoHalvesOfOneFolder) {
  // One folder of i.i.d. images split in halves: KID is 0 in expectation, so a single split
  // lies within 3 standard deviations of its subset estimates.
  const fs::path all = dir_.path() / "all", first = dir_.path() / "first",
                 second = dir_.path() / "second";
  write_random_images(all, 200, 13);
  fs::create_directories(first);
  fs::create_directories(second);
  int index = 0;
  for (const auto& file : scan_image_folder(all)) {
    fs::rename(file, (index++ % 2 ? second : first) / file.filename());
  }
  const fs::path json = dir_.path() / "halves.json";
  const auto halves = run_ddpm(eval(first.string(), second.string(),
                                    "--metrics kid --kid-subsets 50 --kid-subset-size 50 --json " +
                                        json.string()));
  ASSERT_EQ(halves.exit_code, 0) << halves.output;
  const nlohmann::json result = read_json(json);
  const double mean = result["kid_mean"], std = result["kid_std"];
  EXPECT_LT(std::abs(mean), 3 * std) << "KID " << mean << " +- " << std;
  EXPECT_GT(std, 0.0);
}

TEST_F(EvalCli, ErrorsNameTheProblem) {
  const fs::path three = dir_.path() / "three", one = dir_.path() / "one",
                 larger = dir_.path() / "larger";
  testing::write_image_folder(three, 3, 8, 8);
  testing::write_image_folder(one, 1, 8, 8);
  testing::write_image_folder(larger, 3, 10, 10);

  const auto too_few_pr = run_ddpm(eval(three.string(), three.string()));
  EXPECT_EQ(too_few_pr.exit_code, 1);
  EXPECT_CONTAINS(too_few_pr.output, three.string());
  EXPECT_CONTAINS(too_few_pr.output, "3 readable image(s); precision/recall with --pr-k 3 needs "
                                     "at least 4");
  EXPECT_EQ(run_ddpm(eval(three.string(), three.string(), "--pr-k 2")).exit_code, 0);
  const auto too_few_fid = run_ddpm(eval(three.string(), one.string(), "--metrics fid"));
  EXPECT_EQ(too_few_fid.exit_code, 1);
  EXPECT_CONTAINS(too_few_fid.output, one.string());
  EXPECT_CONTAINS(too_few_fid.output, "1 readable image(s); FID needs at least 2");

  const auto sizes = run_ddpm(eval(three.string(), larger.string(), "--metrics fid"));
  EXPECT_EQ(sizes.exit_code, 2);
  EXPECT_CONTAINS(sizes.output, "8x8x1");
  EXPECT_CONTAINS(sizes.output, "10x10x1");
  EXPECT_CONTAINS(sizes.output, "--allow-size-mismatch");
  EXPECT_EQ(run_ddpm(eval(three.string(), larger.string(), "--metrics fid --allow-size-mismatch"))
                .exit_code,
            0);

  const fs::path images_net = dir_.path() / "images_net.pt";
  testing::write_feature_net(images_net, "def forward(self, x):\n  return x\n");
  const auto bad_net = run_ddpm("eval --real " + three.string() + " --generated " +
                                three.string() + " --features " + images_net.string());
  EXPECT_EQ(bad_net.exit_code, 1);
  EXPECT_CONTAINS(bad_net.output, "one feature vector per image");

  const auto missing_net = run_ddpm("eval --real " + three.string() + " --generated " +
                                    three.string() + " --features " +
                                    (dir_.path() / "absent.pt").string());
  EXPECT_EQ(missing_net.exit_code, 1);
  EXPECT_CONTAINS(missing_net.output, "absent.pt' does not exist");
  const auto no_default = run_ddpm("eval --real " + three.string() + " --generated " +
                                   three.string());
  EXPECT_EQ(no_default.exit_code, 2);
  EXPECT_CONTAINS(no_default.output, "scripts/train_feature_net.py");

  const auto nothing = run_ddpm(eval((dir_.path() / "absent").string(), three.string()));
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_CONTAINS(nothing.output, "is neither an image folder nor a stats file");
  EXPECT_EQ(run_ddpm(eval(three.string(), three.string(), "--metrics fid,is")).exit_code, 2);
}

}  // namespace
}  // namespace ddpm
