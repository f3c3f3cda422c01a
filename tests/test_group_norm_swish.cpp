// The fused GroupNorm(+swish) kernel for channels-last CPU tensors, against a float64
// re-computation with ATen's group_norm and silu (forward and every gradient), on shapes that
// exercise its tiling: one row per tile, partial last tiles, many blocks of tiles, 1x1 maps
// and one channel per group. And the UNet, channels-last against contiguous.
#include <gtest/gtest.h>

#include <cmath>

#include "model/group_norm_swish.h"
#include "model/unet.h"
#include "test_support.h"

namespace ddpm {
namespace {

struct NormCase {
  int64_t n, channels, height, width, groups;
  double offset;  // added to x: the statistics must survive a mean far from 0
};

class FusedGroupNorm : public ::testing::TestWithParam<NormCase> {};

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

// Largest |a - b| relative to the largest |b| (with a floor of 1).
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs(a.to(torch::kFloat64) - b) / std::max(1.0, max_abs(b));
}

TEST_P(FusedGroupNorm, MatchesFloat64ReferenceForwardAndBackward) {
  const NormCase c = GetParam();
  torch::manual_seed(7);
  const auto x64 = torch::randn({c.n, c.channels, c.height, c.width}, torch::kFloat64) * 2 + c.offset;
  const auto weight64 = torch::randn({c.channels}, torch::kFloat64);
  const auto bias64 = torch::randn({c.channels}, torch::kFloat64);
  const auto upstream64 = torch::randn_like(x64);
  for (const bool swish : {false, true}) {
    SCOPED_TRACE(swish ? "with swish" : "without swish");
    // Reference: float64, NCHW, ATen.
    auto xr = x64.clone().requires_grad_(true);
    auto wr = weight64.clone().requires_grad_(true);
    auto br = bias64.clone().requires_grad_(true);
    auto reference = at::group_norm(xr, c.groups, wr, br, 1e-6);
    if (swish) reference = at::silu(reference);
    (reference * upstream64).sum().backward();

    // Ours: float32, channels-last.
    auto x = x64.to(torch::kFloat32).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
    auto w = weight64.to(torch::kFloat32).requires_grad_(true);
    auto b = bias64.to(torch::kFloat32).requires_grad_(true);
    ASSERT_TRUE(uses_fused_group_norm(x));
    const auto y = group_norm_swish(x, c.groups, w, b, 1e-6, swish);
    EXPECT_TRUE(y.is_contiguous(at::MemoryFormat::ChannelsLast));
    (y * upstream64.to(torch::kFloat32)).sum().backward();

    // float32 rounding of x (relative 6e-8) scaled by |x| / std when the mean is offset.
    const double tolerance = 2e-5 * (1.0 + std::abs(c.offset) / 2.0);
    EXPECT_LT(relative_error(y.detach(), reference.detach()), tolerance);
    EXPECT_LT(relative_error(x.grad(), xr.grad()), 4 * tolerance);
    EXPECT_LT(relative_error(w.grad(), wr.grad()), 4 * tolerance);
    EXPECT_LT(relative_error(b.grad(), br.grad()), 4 * tolerance);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedGroupNorm,
    ::testing::Values(NormCase{3, 12, 5, 7, 4, 0.0},     // one tile per sample
                      NormCase{2, 12, 20, 20, 3, 0.0},   // full tiles and a partial last one
                      NormCase{2, 16, 64, 64, 8, 0.0},   // more than one block of tiles
                      NormCase{4, 32, 1, 1, 4, 0.0},     // 1x1 maps: 8 values per group
                      NormCase{2, 32, 9, 9, 32, 0.0},    // one channel per group
                      NormCase{2, 16, 12, 12, 4, 30.0}), // mean far from 0
    [](const auto& info) {
      const NormCase& c = info.param;
      return "N" + std::to_string(c.n) + "C" + std::to_string(c.channels) + "H" +
             std::to_string(c.height) + "W" + std::to_string(c.width) + "G" +
             std::to_string(c.groups) + (c.offset != 0.0 ? "Offset" : "");
    });

TEST(FusedGroupNorm, KernelExpMatchesFloat64ExpAndStaysFinite) {
  double worst = 0.0;
  for (double x = -87.3; x <= 88.3; x += 1e-3) {
    const float input = static_cast<float>(x);
    const double exact = std::exp(static_cast<double>(input));
    worst = std::max(worst, std::abs(double(kernel_exp(input)) / exact - 1.0));
  }
  EXPECT_LT(worst, 2e-7);
  for (const float x : {-1e30f, -200.0f, 200.0f, 1e30f}) {
    const float y = kernel_exp(x);
    EXPECT_TRUE(std::isfinite(y) && y > 0.0f) << "exp(" << x << ") = " << y;
  }
}

TEST(FusedGroupNorm, OtherLayoutsGoToATenAndAgree) {
  torch::manual_seed(3);
  const auto x = torch::randn({2, 8, 6, 6});
  const auto weight = torch::randn({8}), bias = torch::randn({8});
  EXPECT_FALSE(uses_fused_group_norm(x));
  EXPECT_FALSE(uses_fused_group_norm(x.to(torch::kFloat64).contiguous(at::MemoryFormat::ChannelsLast)));
  const auto fallback = group_norm_swish(x, 4, weight, bias, 1e-6, true);
  const auto expected = at::silu(at::group_norm(x, 4, weight, bias, 1e-6));
  EXPECT_TRUE(torch::equal(fallback, expected));
  const auto fused =
      group_norm_swish(x.contiguous(at::MemoryFormat::ChannelsLast), 4, weight, bias, 1e-6, true);
  EXPECT_LT(max_abs(fused - expected), 1e-5);
}

TEST(FusedGroupNorm, RefusesChannelsThatDoNotSplitIntoGroups) {
  const auto x = torch::randn({1, 6, 2, 2}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_THROW(group_norm_swish(x, 4, torch::ones({6}), torch::zeros({6}), 1e-6, true),
               c10::Error);
}

TEST(FusedGroupNorm, ResultDoesNotDependOnThreadCount) {
  torch::manual_seed(5);
  const auto x = torch::randn({6, 16, 10, 10}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto weight = torch::randn({16}), bias = torch::randn({16});
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  const auto one = group_norm_swish(x, 4, weight, bias, 1e-6, true);
  torch::set_num_threads(2);
  const auto two = group_norm_swish(x, 4, weight, bias, 1e-6, true);
  torch::set_num_threads(threads);
  EXPECT_TRUE(torch::equal(one, two));
}

// The whole network: channels-last (fused norms, NHWC convolutions, copy-free attention) gives
// the contiguous network's output and gradients.
TEST(ChannelsLastUNet, MatchesContiguousOutputAndGradients) {
  const ModelConfig model = testing::small_model_config();
  const DataConfig data = testing::image_config(3, 16, 16);
  torch::manual_seed(11);
  UNet contiguous(model, data);
  UNet channels_last(model, data);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : contiguous->parameters()) parameter.normal_(0.0, 0.1);
    const auto source = contiguous->parameters();
    const auto target = channels_last->parameters();
    for (size_t i = 0; i < source.size(); ++i) target[i].copy_(source[i]);
  }
  channels_last->set_channels_last(true);
  EXPECT_TRUE(channels_last->channels_last());
  const auto x = torch::randn({3, data.channels, data.height, data.width});
  const auto t = torch::tensor({0, 400, 999}, torch::kLong);
  const auto expected = contiguous->forward(x, t);
  const auto actual = channels_last->forward(x, t);
  EXPECT_TRUE(actual.is_contiguous());
  EXPECT_LT(relative_error(actual.detach(), expected.detach().to(torch::kFloat64)), 1e-5);
  expected.square().sum().backward();
  actual.square().sum().backward();
  const auto source = contiguous->named_parameters();
  const auto target = channels_last->named_parameters();
  for (const auto& item : source) {
    SCOPED_TRACE(item.key());
    const auto& mine = target[item.key()];
    if (mine.dim() == 4) {
      EXPECT_TRUE(mine.is_contiguous(at::MemoryFormat::ChannelsLast));
    }
    EXPECT_LT(relative_error(mine.grad(), item.value().grad().to(torch::kFloat64)), 1e-4);
  }
}

}  // namespace
}  // namespace ddpm
