// Weights files: a round trip restores the exact model; bad files are refused with the reason.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ddpm/error.h"
#include "ddpm/unet.h"
#include "ddpm/weights.h"
#include "test_support.h"

namespace ddpm {
namespace {

class Weights : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("ddpm_weights_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(folder_);
    model_config_ = testing::small_model_config();
    data_config_ = testing::image_config(1, 16, 16);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string load_error(UNet& model, const std::filesystem::path& path) {
    try {
      load_weights(*model, path);
      return "";
    } catch (const Error& error) {
      return error.what();
    }
  }

  std::filesystem::path folder_;
  ModelConfig model_config_;
  DataConfig data_config_;
};

TEST_F(Weights, RoundTripRestoresTheSameOutputs) {
  torch::manual_seed(1);
  UNet original(model_config_, data_config_);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : original->parameters()) parameter.normal_(0.0, 0.1);
  }
  const auto path = folder_ / "weights.pt";
  save_weights(*original, path);

  torch::manual_seed(2);
  UNet restored(model_config_, data_config_);
  load_weights(*restored, path);
  original->eval();
  restored->eval();
  const auto x = torch::randn({2, 1, 16, 16});
  const auto t = torch::tensor({5, 600});
  EXPECT_TRUE(torch::equal(original->forward(x, t), restored->forward(x, t)));
  // Nothing but the final file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(folder_),
                          std::filesystem::directory_iterator()),
            1);
}

TEST_F(Weights, TruncatedAndMissingFilesAreRefused) {
  UNet model(model_config_, data_config_);
  const auto path = folder_ / "weights.pt";
  save_weights(*model, path);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  const auto truncated = load_error(model, path);
  EXPECT_NE(truncated.find("weights.pt"), std::string::npos) << truncated;
  EXPECT_NE(truncated.find("truncated or corrupt"), std::string::npos) << truncated;
  const auto missing = load_error(model, folder_ / "nothing.pt");
  EXPECT_NE(missing.find("nothing.pt"), std::string::npos) << missing;
}

TEST_F(Weights, WeightsOfAnotherModelAreRefused) {
  UNet model(model_config_, data_config_);
  const auto path = folder_ / "weights.pt";
  save_weights(*model, path);
  ModelConfig wider = model_config_;
  wider.base_channels = 32;
  UNet other(wider, data_config_);
  const auto message = load_error(other, path);
  EXPECT_NE(message.find("different model config"), std::string::npos) << message;
}

TEST_F(Weights, UnwritableFolderIsAClearError) {
  UNet model(model_config_, data_config_);
  try {
    save_weights(*model, folder_ / "no" / "such" / "folder" / "weights.pt");
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot write"), std::string::npos);
  }
}

}  // namespace
}  // namespace ddpm
