// Strict config parsing: every error class names the key path; resolved configs round-trip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "config/config_json.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

using nlohmann::json;

// Parses `text` as a config and returns the error message, or "" when it was accepted.
std::string error_of(const std::string& text) {
  try {
    config_from_json(json::parse(text));
    return "";
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2) << error.what();
    return error.what();
  }
}

std::string override_error_of(const std::string& assignment) {
  try {
    default_config({assignment});
    return "";
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2) << error.what();
    return error.what();
  }
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(Config, EmptyObjectGivesTheDefaults) {
  EXPECT_EQ(config_from_json(json::object()), Config{});
}

TEST(Config, ShippedConfigsLoadAndRoundTrip) {
  const std::filesystem::path folder = std::filesystem::path(DDPM_SOURCE_DIR) / "configs";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() != ".json") continue;
    const Config config = load_config(entry.path(), {});
    const std::string text = config_to_json(config).dump();
    EXPECT_EQ(config_from_json(json::parse(text)), config) << entry.path();
    ++count;
  }
  EXPECT_GE(count, 4);
}

TEST(Config, PaperRecipesHoldThePaperValues) {
  const std::filesystem::path folder = std::filesystem::path(DDPM_SOURCE_DIR) / "configs";
  const Config cifar = load_config(folder / "cifar10.json", {});
  EXPECT_EQ(cifar.model.channel_mult, (std::vector<int>{1, 2, 2, 2}));
  EXPECT_EQ(cifar.train.batch_size, 128);
  EXPECT_EQ(cifar.train.steps, 800000);
  EXPECT_DOUBLE_EQ(cifar.train.lr, 2e-4);
  EXPECT_EQ(cifar.train.warmup_steps, 5000);
  EXPECT_DOUBLE_EQ(cifar.train.ema_decay, 0.9999);
  EXPECT_DOUBLE_EQ(cifar.model.dropout, 0.1);
  const Config celeba = load_config(folder / "celebahq256.json", {});
  EXPECT_EQ(celeba.model.channel_mult, (std::vector<int>{1, 1, 2, 2, 4, 4}));
  EXPECT_DOUBLE_EQ(celeba.train.lr, 2e-5);
  EXPECT_EQ(celeba.train.batch_size, 64);
}

TEST(Config, LearnedVariancesAndTheirObjectives) {
  // A learned-variance model samples with its variances unless its sample section says not.
  const Config learned = config_from_json(nlohmann::json::parse(
      R"({"model": {"learn_variance": true}, "train": {"loss": "hybrid"}})"));
  EXPECT_EQ(learned.sample.variance, Variance::learned);
  EXPECT_EQ(learned.train.loss, LossKind::hybrid);
  EXPECT_DOUBLE_EQ(learned.train.vlb_weight, 0.001);
  const Config named = config_from_json(nlohmann::json::parse(
      R"({"model": {"learn_variance": true}, "train": {"loss": "vlb"},
          "sample": {"variance": "fixed_small"}})"));
  EXPECT_EQ(named.sample.variance, Variance::fixed_small);
  EXPECT_EQ(config_from_json(config_to_json(learned)), learned);
  // The combinations that cannot train, each naming the key to change.
  const std::string hybrid_fixed = error_of(R"({"train": {"loss": "hybrid"}})");
  EXPECT_CONTAINS(hybrid_fixed, "train.loss");
  EXPECT_CONTAINS(hybrid_fixed, "model.learn_variance");
  EXPECT_CONTAINS(error_of(R"({"model": {"learn_variance": true}})"),
                  "simple trains no variances");
  const std::string vlb_snr =
      error_of(R"({"train": {"loss": "vlb", "loss_weighting": "min_snr"}})");
  EXPECT_CONTAINS(vlb_snr, "train.loss_weighting");
  EXPECT_CONTAINS(vlb_snr, "train.loss vlb");
  EXPECT_CONTAINS(error_of(R"({"sample": {"variance": "learned"}})"),
                  "'sample.variance': learned needs a model that predicts its variances");
  EXPECT_CONTAINS(error_of(R"({"train": {"vlb_weight": 0}})"), "train.vlb_weight");
  EXPECT_CONTAINS(error_of(R"({"train": {"timestep_sampling": "importance"}})"), "loss_aware");
  EXPECT_CONTAINS(error_of(R"({"train": {"eval_nll_images": -1}})"), "train.eval_nll_images");
  // L_vlb with fixed variances (the DDPM paper's true bound) is allowed.
  EXPECT_EQ(config_from_json(nlohmann::json::parse(R"({"train": {"loss": "vlb"}})")).train.loss,
            LossKind::vlb);
}

TEST(Config, NonSquareImageSizeRoundTrips) {
  const Config config = config_from_json(json::parse(R"({"data": {"image_size": [32, 64]}})"));
  EXPECT_EQ(config.data.height, 32);
  EXPECT_EQ(config.data.width, 64);
  EXPECT_EQ(config_to_json(config)["data"]["image_size"], json::parse("[32, 64]"));
  EXPECT_EQ(config_from_json(config_to_json(config)), config);
}

TEST(Config, UnknownKeysAreRejectedWithASuggestion) {
  const auto message = error_of(R"({"train": {"lrr": 0.001}})");
  EXPECT_CONTAINS(message, "train.lrr");
  EXPECT_CONTAINS(message, "did you mean 'lr'?");
  const auto section = error_of(R"({"trian": {}})");
  EXPECT_CONTAINS(section, "trian");
  EXPECT_CONTAINS(section, "did you mean 'train'?");
}

TEST(Config, WrongTypesAreRejected) {
  EXPECT_CONTAINS(error_of(R"({"train": {"batch_size": "64"}})"), "train.batch_size");
  EXPECT_CONTAINS(error_of(R"({"train": {"batch_size": "64"}})"), "expected an integer");
  EXPECT_CONTAINS(error_of(R"({"train": {"steps": 1.5}})"), "train.steps");
  EXPECT_CONTAINS(error_of(R"({"train": {"lr": "fast"}})"), "expected a number");
  EXPECT_CONTAINS(error_of(R"({"data": {"random_flip": 1}})"), "data.random_flip");
  EXPECT_CONTAINS(error_of(R"({"model": {"channel_mult": [1, "2"]}})"), "model.channel_mult");
  EXPECT_CONTAINS(error_of(R"({"data": {"image_size": [32]}})"), "data.image_size");
  EXPECT_CONTAINS(error_of(R"({"model": 3})"), "model");
  EXPECT_CONTAINS(error_of(R"({"train": {"seed": -1}})"), "train.seed");
  EXPECT_CONTAINS(error_of(R"({"train": {"batch_size": 3000000000}})"), "out of range");
  EXPECT_CONTAINS(error_of("[1, 2]"), "JSON object");
}

TEST(Config, ImpossibleValuesAreRejected) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"diffusion": {"timesteps": 0}})", "diffusion.timesteps"},
      {R"({"diffusion": {"beta_start": 1.5}})", "diffusion.beta_start"},
      {R"({"diffusion": {"beta_end": 0}})", "diffusion.beta_end"},
      {R"({"diffusion": {"beta_start": 0.1, "beta_end": 0.01}})", "diffusion.beta_end"},
      {R"({"diffusion": {"schedule": "cosin"}})", "did you mean 'cosine'?"},
      {R"({"train": {"batch_size": -4}})", "train.batch_size"},
      {R"({"train": {"lr": 0}})", "train.lr"},
      {R"({"train": {"ema_decay": 1.0}})", "train.ema_decay"},
      {R"({"train": {"device": "gpu"}})", "train.device"},
      {R"({"train": {"precision": "fp8"}})", "train.precision"},
      {R"({"train": {"loss_scale_init": 0}})", "train.loss_scale_init"},
      {R"({"train": {"loss_scale_growth": 0.5}})", "train.loss_scale_growth"},
      {R"({"train": {"loss_scale_backoff": 1.0}})", "train.loss_scale_backoff"},
      {R"({"train": {"loss_scale_interval": 0}})", "train.loss_scale_interval"},
      {R"({"train": {"loss_scale_min": 131072}})", "train.loss_scale_min"},
      {R"({"sample": {"precision": "half"}})", "sample.precision"},
      {R"({"model": {"norm_groups": 24}})", "model.norm_groups"},
      {R"({"model": {"base_channels": 30}})", "model.norm_groups"},
      {R"({"model": {"attention_resolutions": [12]}})", "model.attention_resolutions"},
      {R"({"model": {"attention_heads": 3}})", "model.attention_heads"},
      {R"({"model": {"dropout": 1.0}})", "model.dropout"},
      {R"({"model": {"channel_mult": []}})", "model.channel_mult"},
      {R"({"data": {"image_size": 28}})", "data.image_size"},
      {R"({"data": {"image_size": 0}})", "data.image_size"},
      {R"({"data": {"channels": 2}})", "data.channels"},
      {R"({"data": {"max_files": 0}})", "data.max_files"},
      {R"({"data": {"max_image_pixels": 0}})", "data.max_image_pixels"},
      {R"({"data": {"max_image_pixels": 268435457}})", "must be in [1, 268435456]"},
      {R"({"sample": {"steps": 1001}})", "sample.steps"},
      {R"({"sample": {"sampler": "dpm"}})", "sample.sampler"},
      {R"({"sample": {"variance": "learned"}})", "sample.variance"},
  };
  for (const auto& [text, key] : cases) {
    EXPECT_CONTAINS(error_of(text), key);
  }
}

TEST(Config, OverridesApplyWithTheSameValidation) {
  const Config config = default_config({"train.lr=1e-4", "model.channel_mult=[1,2,2]",
                                        "diffusion.schedule=cosine", "data.path=/data/my images",
                                        "data.image_size=[16,24]", "data.random_flip=true"});
  EXPECT_DOUBLE_EQ(config.train.lr, 1e-4);
  EXPECT_EQ(config.model.channel_mult, (std::vector<int>{1, 2, 2}));
  EXPECT_EQ(config.diffusion.schedule, Schedule::cosine);
  EXPECT_EQ(config.data.path, "/data/my images");
  EXPECT_EQ(config.data.height, 16);
  EXPECT_EQ(config.data.width, 24);
  EXPECT_TRUE(config.data.random_flip);  // off by default

  EXPECT_CONTAINS(override_error_of("train.lr=abc"), "train.lr");
  EXPECT_CONTAINS(override_error_of("train.lrr=1"), "did you mean 'lr'?");
  EXPECT_CONTAINS(override_error_of("train.batch_size=-1"), "train.batch_size");
  EXPECT_CONTAINS(override_error_of("trainlr=1"), "section.key=value");
  EXPECT_CONTAINS(override_error_of("train.lr"), "section.key=value");
  EXPECT_CONTAINS(override_error_of("train.lr.x=1"), "section.key=value");
}

class ConfigFile : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("ddpm_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }
  std::filesystem::path write(const std::string& name, const std::string& text) {
    std::ofstream(folder_ / name) << text;
    return folder_ / name;
  }
  static std::string load_error(const std::filesystem::path& file) {
    try {
      load_config(file, {});
      return "";
    } catch (const Error& error) {
      EXPECT_EQ(error.exit_code(), 2) << error.what();
      return error.what();
    }
  }
  std::filesystem::path folder_;
};

TEST_F(ConfigFile, RelativeDataPathIsRelativeToTheConfigFile) {
  const auto file = write("run.json", R"({"data": {"path": "images/train"}})");
  EXPECT_EQ(load_config(file, {}).data.path, (folder_ / "images/train").string());
  // An override is taken as given.
  EXPECT_EQ(load_config(file, {"data.path=other"}).data.path, "other");
}

TEST_F(ConfigFile, FileErrorsNameTheFile) {
  try {
    load_config(folder_ / "missing.json", {});
    FAIL();
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "missing.json");
    EXPECT_CONTAINS(error.what(), "does not exist");
  }
  const auto broken = write("broken.json", R"({"train": {"lr": 0.1,}})");
  try {
    load_config(broken, {});
    FAIL();
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "broken.json");
    EXPECT_CONTAINS(error.what(), "not valid JSON");
  }
  const auto unknown = write("unknown.json", R"({"model": {"base_channel": 64}})");
  try {
    load_config(unknown, {});
    FAIL();
  } catch (const Error& error) {
    EXPECT_CONTAINS(error.what(), "unknown.json");
    EXPECT_CONTAINS(error.what(), "model.base_channel");
    EXPECT_CONTAINS(error.what(), "did you mean 'base_channels'?");
  }
}

TEST_F(ConfigFile, AFileLongerThanAConfigCanBeIsRefusedUnread) {
  // Sparse: a "config" of 4 GiB that uses no disk; reading it would take that much memory.
  const auto huge = write("huge.json", "{");
  std::filesystem::resize_file(huge, uintmax_t{4} << 30);
  const std::string message = load_error(huge);
  EXPECT_CONTAINS(message, "huge.json");
  EXPECT_CONTAINS(message, "4294967296 bytes");
  EXPECT_CONTAINS(message, std::to_string(kMaxConfigBytes));
  EXPECT_CONTAINS(message, "kMaxConfigBytes");
  // At the limit it is read (and here refused as JSON).
  const auto limit = write("limit.json", "{");
  std::filesystem::resize_file(limit, kMaxConfigBytes);
  EXPECT_CONTAINS(load_error(limit), "not valid JSON");
}

TEST_F(ConfigFile, ANumberBeyondDoubleIsAJsonErrorNamingTheFile) {
  const auto file = write("overflow.json", R"({"train": {"lr": 1e400}})");
  const std::string message = load_error(file);
  EXPECT_CONTAINS(message, "overflow.json");
  EXPECT_CONTAINS(message, "number overflow");
}

TEST(Config, DefaultsTextListsEveryKeyWithItsDefault) {
  const std::string text = config_defaults_text();
  EXPECT_CONTAINS(text, "train.lr = 0.0002");
  EXPECT_CONTAINS(text, "diffusion.timesteps = 1000");
  EXPECT_CONTAINS(text, "model.channel_mult = [1,2,2,2]");
  EXPECT_CONTAINS(text, "data.image_size = 32");
  EXPECT_CONTAINS(text, "sample.sampler = \"ddpm\"");
}

}  // namespace
}  // namespace ddpm
