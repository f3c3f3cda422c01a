// Feature networks (TorchScript fixtures made here with torch::jit::Module::define), the features
// of a folder, and stats files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ddpm/error.h"
#include "eval/feature_net.h"
#include "eval/feature_stats.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"
#include "formats/image_tensor.h"
#include "formats/weights.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::write_feature_net;

std::string load_error(const fs::path& path) {
  try {
    FeatureNet net(path, torch::kCPU);
    net.features(torch::zeros({3, 1, 8, 8}));
    return "";
  } catch (const Error& error) {
    return error.what();
  }
}

TEST(FeatureNet, LoadsTheDeclaredInputAndRunsBatches) {
  TempDir dir("feature_net_load");
  const fs::path path = dir.path() / "net.pt";
  write_feature_net(path, testing::kBlockMeansForward);
  FeatureNet net(path, torch::kCPU);
  EXPECT_EQ(net.input().channels, 1);
  EXPECT_EQ(net.input().height, 8);
  EXPECT_EQ(net.input().width, 8);
  EXPECT_EQ(net.identifier().rfind("fnv1a64:", 0), 0u);
  EXPECT_EQ(net.identifier().size(), std::string("fnv1a64:0123456789abcdef/1x8x8").size());
  const torch::Tensor x = torch::rand({5, 1, 8, 8}) * 2 - 1;
  const torch::Tensor features = net.features(x);
  ASSERT_EQ(features.sizes(), (std::vector<int64_t>{5, 16}));
  // The fixture's forward is the mean of each 2x2 block.
  const double block = x[2][0].slice(0, 2, 4).slice(1, 2, 4).mean().item<double>();
  EXPECT_NEAR(features[2][5].item<double>(), block, 1e-6);
  // Another file gives another identifier.
  write_feature_net(dir.path() / "other.pt", "def forward(self, x):\n  return x.flatten(1)\n");
  EXPECT_NE(FeatureNet(dir.path() / "other.pt", torch::kCPU).identifier(), net.identifier());
}

TEST(FeatureNet, RefusesOutputsThatAreNotOneVectorPerImage) {
  TempDir dir("feature_net_output");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"def forward(self, x):\n  return x\n", "returns shape [3, 1, 8, 8] for 3 images"},
      {"def forward(self, x):\n  return x.sum()\n", "returns shape [] for 3 images"},
      {"def forward(self, x):\n  return x.flatten(1)[:1]\n", "returns shape [1, 64] for 3 images"},
      {"def forward(self, x):\n  return (x, x)\n", "returns a Tuple, not a tensor"},
      {"def forward(self, x):\n  return x.flatten(1).long()\n", "returns a tensor of Long"},
      {"def forward(self, x):\n  return x.flatten(1) / 0.0\n", "non-finite"},
  };
  for (const auto& [source, message] : cases) {
    const fs::path path = dir.path() / "net.pt";
    write_feature_net(path, source);
    const std::string error = load_error(path);
    EXPECT_CONTAINS(error, message);
    EXPECT_CONTAINS(error, path.string());
  }
}

// A network with a classifier: class_names (a list of strings) and classify (logits [N, K]).
fs::path write_classifier(const fs::path& path, const c10::IValue& names, c10::TypePtr type,
                          const std::string& classify_source) {
  torch::jit::Module module("ClassifierFixture");
  module.register_attribute("input_channels", c10::IntType::get(), 1);
  module.register_attribute("input_height", c10::IntType::get(), 8);
  module.register_attribute("input_width", c10::IntType::get(), 8);
  module.register_attribute("class_names", type, names);
  module.define(std::string(testing::kBlockMeansForward) + classify_source);
  module.save(path.string());
  return path;
}

TEST(FeatureNet, ClassifiesWithItsClassifierAndRefusesMalformedOnes) {
  TempDir dir("feature_net_classifier");
  const std::string by_brightness =
      "def classify(self, x):\n  m = x.flatten(1).mean(1)\n  return torch.stack([-m, m], 1)\n";
  const auto names = c10::List<std::string>({"dark", "bright"});
  FeatureNet net(write_classifier(dir.path() / "net.pt", names, c10::ListType::ofStrings(),
                                  by_brightness),
                 torch::kCPU);
  ASSERT_TRUE(net.has_classifier());
  EXPECT_EQ(net.class_names(), (std::vector<std::string>{"dark", "bright"}));
  const torch::Tensor batch = torch::stack({torch::full({1, 8, 8}, -0.5), torch::full({1, 8, 8}, 0.25),
                                            torch::full({1, 8, 8}, -0.1)});
  const torch::Tensor classes = net.classify(batch);
  EXPECT_EQ(classes.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(classes, torch::tensor({0, 1, 0}, torch::kInt64)));

  // A network without the pair has no classifier; asking it to classify names the file.
  write_feature_net(dir.path() / "plain.pt", testing::kBlockMeansForward);
  FeatureNet plain(dir.path() / "plain.pt", torch::kCPU);
  EXPECT_FALSE(plain.has_classifier());
  try {
    plain.classify(batch);
    ADD_FAILURE() << "classified without a classifier";
  } catch (const Error& error) {
    EXPECT_CONTAINS(std::string(error.what()), "plain.pt' has no classifier");
  }

  // Logits of the wrong width, and class names that are not strings.
  FeatureNet three(write_classifier(dir.path() / "three.pt", names, c10::ListType::ofStrings(),
                                    "def classify(self, x):\n  return x.flatten(1)[:, :3]\n"),
                   torch::kCPU);
  try {
    three.classify(batch);
    ADD_FAILURE() << "accepted 3 logits for 2 classes";
  } catch (const Error& error) {
    EXPECT_CONTAINS(std::string(error.what()), "classify must return logits [N, 2]");
    EXPECT_CONTAINS(std::string(error.what()), "[3, 3]");
  }
  write_classifier(dir.path() / "ints.pt", c10::List<int64_t>({0, 1}), c10::ListType::ofInts(),
                   by_brightness);
  EXPECT_CONTAINS(load_error(dir.path() / "ints.pt"), "class_names entry of type Int");
}

TEST(FeatureNet, RefusesMissingCorruptAndUndeclaredNetworks) {
  TempDir dir("feature_net_files");
  const std::string missing = load_error(dir.path() / "absent.pt");
  EXPECT_CONTAINS(missing, "does not exist");
  EXPECT_CONTAINS(missing, "scripts/train_feature_net.py");

  const fs::path corrupt = dir.path() / "corrupt.pt";
  std::ofstream(corrupt) << "not a zip archive";
  EXPECT_CONTAINS(load_error(corrupt), "is not a TorchScript module");

  const fs::path truncated = dir.path() / "truncated.pt";
  write_feature_net(truncated, testing::kBlockMeansForward);
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  EXPECT_CONTAINS(load_error(truncated), "is not a TorchScript module");

  const fs::path undeclared = dir.path() / "undeclared.pt";
  write_feature_net(undeclared, testing::kBlockMeansForward, {1, 8, 8}, false);
  EXPECT_CONTAINS(load_error(undeclared), "has no attribute 'input_channels'");

  const fs::path two_channels = dir.path() / "two_channels.pt";
  write_feature_net(two_channels, testing::kBlockMeansForward, {2, 8, 8});
  EXPECT_CONTAINS(load_error(two_channels), "input_channels = 2");
}

TEST(FeatureNet, FolderFeaturesResizeAndSkipUnreadableFiles) {
  TempDir dir("feature_net_folder");
  const fs::path net_path = dir.path() / "net.pt";
  write_feature_net(net_path, testing::kBlockMeansForward);
  FeatureNet net(net_path, torch::kCPU);

  const fs::path same = dir.path() / "same";
  testing::write_image_folder(same, 7, 8, 8);
  std::ofstream(same / "broken.png") << "garbage";
  const FolderFeatures features = folder_features(same, net, 3);
  ASSERT_EQ(features.features.sizes(), (std::vector<int64_t>{7, 16}));
  EXPECT_EQ(features.skipped, 1);
  ASSERT_EQ(features.skipped_examples.size(), 1u);
  EXPECT_CONTAINS(features.skipped_examples[0], "broken.png");
  EXPECT_EQ(features.image_shape, "8x8x1");
  // The same images, run one by one: batching does not change the features.
  const torch::Tensor first = image_to_tensor(read_image(same / "image_000.png", 1)).unsqueeze(0);
  EXPECT_TRUE(torch::allclose(features.features[0], net.features(first)[0], 0, 1e-6));

  const fs::path larger = dir.path() / "larger";
  testing::write_image_folder(larger, 3, 16, 12);
  const FolderFeatures resized = folder_features(larger, net, 8);
  EXPECT_EQ(resized.image_shape, "16x12x1");
  const Image expected = resize_and_crop(read_image(larger / "image_001.png", 1), 8, 8);
  EXPECT_TRUE(torch::allclose(resized.features[1],
                              net.features(image_to_tensor(expected).unsqueeze(0))[0], 0, 1e-6));
  testing::write_image_folder(larger / "small", 1, 8, 8);
  const FolderFeatures mixed = folder_features(larger, net, 8);
  EXPECT_EQ(mixed.image_shape, "mixed");
  EXPECT_CONTAINS(mixed.mixed_example, "image_000.png' is 16x12x1");
  EXPECT_CONTAINS(mixed.mixed_example, "small/image_000.png' is 8x8x1");

  const fs::path unreadable = dir.path() / "unreadable";
  fs::create_directories(unreadable);
  std::ofstream(unreadable / "a.png") << "garbage";
  try {
    folder_features(unreadable, net, 8);
    ADD_FAILURE() << "a folder without a readable image was accepted";
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), unreadable.string());
    EXPECT_CONTAINS(error.what(), "none of its 1 image files is readable");
  }
}

TEST(FeatureStats, MeanAndCovarianceMatchALoopAndSurviveARoundTrip) {
  torch::manual_seed(12);
  const torch::Tensor features = torch::randn({9, 3});
  FeatureStats stats = feature_stats(features);
  ASSERT_EQ(stats.mean.scalar_type(), torch::kFloat64);
  for (int a = 0; a < 3; ++a) {
    double mean_a = 0, mean_b[3] = {0, 0, 0};
    for (int i = 0; i < 9; ++i) mean_a += features[i][a].item<double>() / 9;
    EXPECT_NEAR(stats.mean[a].item<double>(), mean_a, 1e-12);
    for (int b = 0; b < 3; ++b) {
      for (int i = 0; i < 9; ++i) mean_b[b] += features[i][b].item<double>() / 9;
      double covariance = 0;
      for (int i = 0; i < 9; ++i) {
        covariance += (features[i][a].item<double>() - mean_a) *
                      (features[i][b].item<double>() - mean_b[b]) / 8;
      }
      EXPECT_NEAR(stats.covariance[a][b].item<double>(), covariance, 1e-12);
    }
  }
  stats.feature_net = "fnv1a64:0000000000000001/1x8x8";
  stats.feature_net_file = "net.pt";
  stats.source = "images/";
  stats.image_shape = "8x8x1";
  stats.skipped = 2;
  TempDir dir("feature_stats");
  const fs::path path = dir.path() / "stats.pt";
  save_feature_stats(stats, path);
  const FeatureStats loaded = load_feature_stats(path);
  EXPECT_TRUE(torch::equal(loaded.features, stats.features));
  EXPECT_TRUE(torch::equal(loaded.mean, stats.mean));
  EXPECT_TRUE(torch::equal(loaded.covariance, stats.covariance));
  EXPECT_EQ(loaded.feature_net, stats.feature_net);
  EXPECT_EQ(loaded.feature_net_file, "net.pt");
  EXPECT_EQ(loaded.source, "images/");
  EXPECT_EQ(loaded.image_shape, "8x8x1");
  EXPECT_EQ(loaded.skipped, 2);
  EXPECT_THROW(feature_stats(features.slice(0, 0, 1)), Error);
}

TEST(FeatureStats, RefusesFilesThatAreNotStats) {
  TempDir dir("feature_stats_bad");
  const auto error_of = [](const fs::path& path) {
    try {
      load_feature_stats(path);
      return std::string();
    } catch (const Error& error) {
      return std::string(error.what());
    }
  };
  const fs::path weights = dir.path() / "weights.pt";
  c10::Dict<std::string, torch::Tensor> tensors;
  tensors.insert("w", torch::zeros({2}));
  const std::vector<char> bytes = pickle_for_python(c10::IValue(tensors));
  std::ofstream(weights, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  EXPECT_CONTAINS(error_of(weights), "is not a feature stats file");

  FeatureStats stats = feature_stats(torch::randn({4, 2}));
  const fs::path truncated = dir.path() / "truncated.pt";
  save_feature_stats(stats, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) - 40);
  EXPECT_CONTAINS(error_of(truncated), "truncated or corrupt");
  EXPECT_CONTAINS(error_of(dir.path() / "absent.pt"), "cannot be opened");
}

}  // namespace
}  // namespace ddpm
