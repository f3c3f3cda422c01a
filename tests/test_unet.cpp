// The UNet: shapes, exact parameter counts of the paper's networks, the time embedding, the
// original network's padding, norm and initialisation details, and dependence on t.
#include <gtest/gtest.h>

#include <cmath>

#include "ddpm/error.h"
#include "model/unet.h"
#include "test_support.h"

namespace ddpm {
namespace {

using testing::image_config;
using testing::small_model_config;

// Gives every parameter random values, so that blocks initialised at zero do not hide inputs.
void randomize(torch::nn::Module& module, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& parameter : module.parameters()) parameter.normal_(0.0, 0.1);
}

struct ShapeCase {
  int channels, height, width;
};

class UNetShapes : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(UNetShapes, OutputShapeEqualsInputShape) {
  const auto [channels, height, width] = GetParam();
  UNet model(small_model_config(), image_config(channels, height, width));
  randomize(*model, 1);
  const auto x = torch::randn({3, channels, height, width});
  const auto out = model->forward(x, torch::tensor({0, 500, 999}, torch::kLong));
  EXPECT_EQ(out.sizes(), x.sizes());
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(GrayscaleRgbRgbaNonSquare, UNetShapes,
                         ::testing::Values(ShapeCase{1, 16, 16}, ShapeCase{3, 16, 16},
                                           ShapeCase{4, 16, 16}, ShapeCase{3, 16, 32},
                                           ShapeCase{1, 32, 8}),
                         [](const ::testing::TestParamInfo<ShapeCase>& info) {
                           return std::to_string(info.param.channels) + "x" +
                                  std::to_string(info.param.height) + "x" +
                                  std::to_string(info.param.width);
                         });

TEST(UNet, Cifar10ConfigHasThePaperParameterCount) {
  UNet model(ModelConfig{}, image_config(3, 32, 32));  // the defaults are the CIFAR-10 recipe
  EXPECT_EQ(model->parameter_count(), 35746307);
}

TEST(UNet, CelebAHq256ConfigHasThePaperParameterCount) {
  ModelConfig model;
  model.channel_mult = {1, 1, 2, 2, 4, 4};
  model.dropout = 0.0;
  UNet unet(model, image_config(3, 256, 256));
  EXPECT_EQ(unet->parameter_count(), 113673219);
}

TEST(UNet, TimeEmbeddingMatchesTheFormula) {
  const int64_t dim = 16, half = dim / 2;
  const std::vector<int64_t> steps = {0, 1, 17, 999};
  const auto embedding = timestep_embedding(torch::tensor(steps), dim);
  ASSERT_EQ(embedding.sizes(), (std::vector<int64_t>{4, dim}));
  for (size_t row = 0; row < steps.size(); ++row) {
    for (int64_t i = 0; i < half; ++i) {
      const double frequency = std::exp(-std::log(10000.0) * double(i) / double(half - 1));
      const double angle = double(steps[row]) * frequency;
      // float32 angles up to 999 rad carry ~6e-5 absolute error in sin and cos.
      EXPECT_NEAR(embedding[row][i].item<double>(), std::sin(angle), 2e-4);
      EXPECT_NEAR(embedding[row][half + i].item<double>(), std::cos(angle), 2e-4);
    }
  }
}

TEST(UNet, TimeEmbeddingShiftAndOrderMatchTheFormula) {
  // diffusers' defaults: frequency shift 0 and cos before sin.
  const int64_t dim = 16, half = dim / 2;
  const std::vector<int64_t> steps = {0, 3, 500};
  const auto embedding = timestep_embedding(torch::tensor(steps), dim, 0.0, /*cos_first=*/true);
  for (size_t row = 0; row < steps.size(); ++row) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(steps[row]) * std::exp(-std::log(10000.0) * double(i) / half);
      EXPECT_NEAR(embedding[row][i].item<double>(), std::cos(angle), 2e-4);
      EXPECT_NEAR(embedding[row][half + i].item<double>(), std::sin(angle), 2e-4);
    }
  }
}

TEST(UNet, OutputDependsOnTimestep) {
  UNet model(small_model_config(), image_config(1, 16, 16));
  randomize(*model, 2);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 1, 16, 16});
  const auto early = model->forward(x, torch::tensor({int64_t(10)}));
  const auto late = model->forward(x, torch::tensor({int64_t(900)}));
  const double difference = (early - late).abs().mean().item<double>();
  EXPECT_GT(difference, 1e-3 * early.abs().mean().item<double>() + 1e-6);
  // ...and is a function of (x, t): the same inputs give the same output.
  EXPECT_TRUE(torch::equal(early, model->forward(x, torch::tensor({int64_t(10)}))));
}

TEST(UNet, FreshModelPredictsZeroLikeTheOriginal) {
  // The output conv starts at zero, so an untrained network predicts eps = 0.
  UNet model(small_model_config(), image_config(1, 16, 16));
  const auto out = model->forward(torch::randn({2, 1, 16, 16}), torch::tensor({3, 700}));
  EXPECT_EQ(out.abs().max().item<float>(), 0.0f);
  for (const auto& item : model->named_parameters()) {
    const auto& name = item.key();
    const bool zero_init = name.ends_with("conv2.weight") || name.ends_with("to_out.0.weight") ||
                           name == "conv_out.weight";
    if (zero_init) {
      EXPECT_EQ(item.value().abs().max().item<float>(), 0.0f) << name;
    }
  }
}

TEST(UNet, GroupNormEpsilonIsTheOriginalOne) {
  UNet model(small_model_config(), image_config(1, 16, 16));
  int norms = 0;
  for (const auto& module : model->modules(/*include_self=*/false)) {
    if (const auto* norm = module->as<torch::nn::GroupNormImpl>()) {
      EXPECT_DOUBLE_EQ(norm->options.eps(), 1e-6);
      ++norms;
    }
  }
  EXPECT_GT(norms, 5);
}

// Naive float64 convolution, stride 2: asymmetric padding (TensorFlow's SAME) puts zeros only
// below and to the right; symmetric padding one row and column on every side.
TEST(UNet, DownsamplePaddingIsAsymmetricOrSymmetric) {
  for (const bool symmetric : {false, true}) {
    Downsample downsample(1, symmetric);
    randomize(*downsample, 3);
    const auto x = torch::randn({1, 1, 6, 6});
    const auto y = downsample->forward(x);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 1, 3, 3}));
    const auto weight = downsample->conv->weight.to(torch::kFloat64);
    const double bias = downsample->conv->bias.item<double>();
    const auto input = x.to(torch::kFloat64);
    const int offset = symmetric ? -1 : 0;
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) {
        double sum = bias;
        for (int a = 0; a < 3; ++a) {
          for (int b = 0; b < 3; ++b) {
            const int row = 2 * i + a + offset, column = 2 * j + b + offset;
            if (row >= 0 && column >= 0 && row < 6 && column < 6) {
              sum += weight[0][0][a][b].item<double>() * input[0][0][row][column].item<double>();
            }
          }
        }
        EXPECT_NEAR(y[0][0][i][j].item<double>(), sum, 1e-5) << symmetric << " " << i << "," << j;
      }
    }
  }
}

TEST(UNet, RejectsSizesTheLevelsCannotHalve) {
  ModelConfig model;  // 4 levels: sizes must be divisible by 8
  try {
    UNet unet(model, image_config(3, 28, 28));
    FAIL() << "a 28x28 image with 4 levels was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2);
    EXPECT_NE(std::string(error.what()).find("data.image_size"), std::string::npos);
    EXPECT_NE(std::string(error.what()).find("divisible by 8"), std::string::npos);
  }
}

TEST(UNet, RejectsInputsOfAnotherShape) {
  UNet model(small_model_config(), image_config(1, 16, 16));
  EXPECT_THROW(model->forward(torch::randn({1, 3, 16, 16}), torch::tensor({int64_t(1)})),
               c10::Error);
  EXPECT_THROW(model->forward(torch::randn({2, 1, 16, 16}), torch::tensor({int64_t(1)})),
               c10::Error);
}

}  // namespace
}  // namespace ddpm
