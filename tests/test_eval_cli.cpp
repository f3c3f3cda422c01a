// `ddpm eval` end to end, with a small TorchScript feature network made by the test.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "data/image_folder.h"
#include "formats/image_io.h"
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

// `count` 8x8 gray PNGs of uniform random pixels in [low, high].
void write_level_images(const fs::path& folder, int count, int low, int high, uint64_t seed) {
  fs::create_directories(folder);
  torch::manual_seed(seed);
  for (int index = 0; index < count; ++index) {
    const torch::Tensor pixels = torch::randint(low, high + 1, {8 * 8}, torch::kUInt8);
    Image image{8, 8, 1, std::vector<uint8_t>(pixels.data_ptr<uint8_t>(),
                                              pixels.data_ptr<uint8_t>() + pixels.numel())};
    write_png(folder / (std::to_string(seed) + "_" + std::to_string(index) + ".png"), image);
  }
}

TEST_F(EvalCli, PerClassLabelsAnUnconditionalFolderWithTheNetworksClassifier) {
  // A feature network with a classifier: class "bright" when an image's mean is above mid-grey.
  const fs::path classifier = dir_.path() / "classifier.pt";
  {
    torch::jit::Module module("ClassifierFixture");
    module.register_attribute("input_channels", c10::IntType::get(), 1);
    module.register_attribute("input_height", c10::IntType::get(), 8);
    module.register_attribute("input_width", c10::IntType::get(), 8);
    module.register_attribute("class_names", c10::ListType::ofStrings(),
                              c10::List<std::string>({"dark", "bright"}));
    module.define(std::string(testing::kBlockMeansForward) +
                  "def classify(self, x):\n"
                  "  m = x.flatten(1).mean(1)\n"
                  "  return torch.stack([-m, m], 1)\n");
    module.save(classifier.string());
  }
  const fs::path real = dir_.path() / "real", generated = dir_.path() / "generated",
                 generated_dark = dir_.path() / "generated_dark",
                 real_flat = dir_.path() / "real_flat";
  write_level_images(real / "dark", 20, 0, 100, 1);
  write_level_images(real / "bright", 20, 155, 255, 2);
  write_level_images(generated, 30, 0, 110, 3);  // the samples of an unconditional model
  write_level_images(generated, 10, 145, 255, 4);
  write_level_images(generated_dark, 30, 0, 110, 3);  // the same dark samples, alone
  for (const auto& [side, source] : {std::pair{"dark", 1}, std::pair{"bright", 2}}) {
    write_level_images(real_flat, 20, side == std::string("dark") ? 0 : 155,
                       side == std::string("dark") ? 100 : 255, source);
  }
  const auto per_class = [&](const fs::path& real_folder, const fs::path& json) {
    return run_ddpm("eval --real " + real_folder.string() + " --generated " +
                    generated.string() + " --features " + classifier.string() +
                    " --threads 2 --kid-subsets 10 --per-class --json " + json.string());
  };
  const auto labelled = per_class(real, dir_.path() / "labelled.json");
  ASSERT_EQ(labelled.exit_code, 0) << labelled.output;
  EXPECT_CONTAINS(labelled.output, "classifier labels its images (2 classes)");
  EXPECT_CONTAINS(labelled.output, "class_balance    0.2500 .. 0.7500");
  const nlohmann::json result = read_json(dir_.path() / "labelled.json");
  const nlohmann::json& dark = result["per_class"]["dark"];
  const nlohmann::json& bright = result["per_class"]["bright"];
  EXPECT_EQ(dark["num_generated"], 30);
  EXPECT_EQ(bright["num_generated"], 10);
  EXPECT_DOUBLE_EQ(dark["fraction"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(bright["fraction"].get<double>(), 0.25);
  EXPECT_EQ(dark["num_real"], 20);
  EXPECT_EQ(bright["num_real"], 20);

  // The class's figures are those of its images alone against the real class folder.
  const fs::path alone = dir_.path() / "alone.json";
  const auto separately = run_ddpm("eval --real " + (real / "dark").string() + " --generated " +
                                   generated_dark.string() + " --features " +
                                   classifier.string() + " --threads 2 --kid-subsets 10 --json " +
                                   alone.string());
  ASSERT_EQ(separately.exit_code, 0) << separately.output;
  const nlohmann::json reference = read_json(alone);
  EXPECT_NEAR(dark["fid"].get<double>(), reference["fid"].get<double>(),
              1e-6 * reference["fid"].get<double>());
  EXPECT_DOUBLE_EQ(dark["precision"].get<double>(), reference["precision"].get<double>());
  EXPECT_DOUBLE_EQ(dark["recall"].get<double>(), reference["recall"].get<double>());

  // Real images without class folders are labelled by the classifier too: the same classes.
  const auto both_labelled = per_class(real_flat, dir_.path() / "both.json");
  ASSERT_EQ(both_labelled.exit_code, 0) << both_labelled.output;
  EXPECT_CONTAINS(both_labelled.output, "the classifier labels the real images too");
  const nlohmann::json both = read_json(dir_.path() / "both.json");
  EXPECT_EQ(both["per_class"]["dark"]["num_real"], 20);
  EXPECT_NEAR(both["per_class"]["dark"]["fid"].get<double>(), reference["fid"].get<double>(),
              1e-6 * reference["fid"].get<double>());

  // Without a classifier there is nothing to label with: a usage error that says what to do.
  const auto no_classifier = run_ddpm(eval(real.string(), generated.string(), "--per-class"));
  EXPECT_EQ(no_classifier.exit_code, 2);
  EXPECT_CONTAINS(no_classifier.output, "no classifier to label its images");
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
  // Without --features, from another folder: the shipped network beside the program's tree
  // (a build folder inside the repository); a copy of the program far from it, in a folder
  // without one, says where it looked and what to do.
  const std::string both = " eval --real " + three.string() + " --generated " + three.string() +
                           " --metrics fid --allow-size-mismatch";
  const fs::path shipped = fs::path(DDPM_BINARY).parent_path().parent_path() /
                           "data/feature-nets/fashion_mnist.pt";
  const auto from_elsewhere =
      testing::run_command("cd " + dir_.path().string() + " && " + DDPM_BINARY + both);
  if (fs::exists(shipped)) {
    EXPECT_EQ(from_elsewhere.exit_code, 0) << from_elsewhere.output;
    EXPECT_CONTAINS(from_elsewhere.output, "features_file    \"" + shipped.string() + "\"");
  }
  fs::create_directories(dir_.path() / "elsewhere/bin");
  fs::copy_file(DDPM_BINARY, dir_.path() / "elsewhere/bin/ddpm");
  const auto no_default = testing::run_command("cd " + dir_.path().string() + " && " +
                                               (dir_.path() / "elsewhere/bin/ddpm").string() +
                                               both);
  EXPECT_EQ(no_default.exit_code, 2);
  EXPECT_CONTAINS(no_default.output, "default feature network was not found");
  EXPECT_CONTAINS(no_default.output, "elsewhere/share/ddpm/feature-nets/fashion_mnist.pt");
  EXPECT_CONTAINS(no_default.output, "scripts/train_feature_net.py");

  const auto nothing = run_ddpm(eval((dir_.path() / "absent").string(), three.string()));
  EXPECT_EQ(nothing.exit_code, 2);
  EXPECT_CONTAINS(nothing.output, "is neither an image folder nor a stats file");
  EXPECT_EQ(run_ddpm(eval(three.string(), three.string(), "--metrics fid,is")).exit_code, 2);
}

}  // namespace
}  // namespace ddpm
