// fused_adam_step(): the same parameters and state as torch::optim::Adam's own step, and Adam's
// update re-computed in float64 from its definition.
#include <gtest/gtest.h>

#include <cmath>

#include "ddpm/error.h"
#include "train/fused_adam.h"

namespace ddpm {
namespace {

// A weight in each layout the UNet has (channels-last 4-D, 2-D, 1-D) and one without gradient.
std::vector<torch::Tensor> make_parameters(uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({4, 3, 3, 3}).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(),
          torch::randn({5, 7}).requires_grad_(), torch::randn({9}).requires_grad_(),
          torch::randn({3}).requires_grad_()};
}

// Gives every parameter but the last a gradient in its own layout, different at every step.
void set_gradients(std::vector<torch::Tensor>& parameters, int step) {
  torch::manual_seed(100 + step);
  for (size_t i = 0; i + 1 < parameters.size(); ++i) {
    parameters[i].mutable_grad() = torch::randn_like(parameters[i]) * (1.0 + step);
  }
}

TEST(FusedAdam, MatchesTorchAdamParametersAndState) {
  auto reference = make_parameters(1);
  auto fused = make_parameters(1);
  const auto options = torch::optim::AdamOptions(1e-2).betas({0.9, 0.99}).eps(1e-8).weight_decay(0.01);
  torch::optim::Adam reference_adam(reference, options);
  torch::optim::Adam fused_adam(fused, options);
  for (int step = 0; step < 5; ++step) {
    set_gradients(reference, step);
    set_gradients(fused, step);
    reference_adam.step();
    fused_adam_step(fused_adam);
  }
  for (size_t i = 0; i < reference.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_TRUE(torch::allclose(fused[i], reference[i], 1e-6, 1e-6));
    EXPECT_EQ(fused[i].strides(), reference[i].strides());
    const auto& states = fused_adam.state();
    const auto found = states.find(fused[i].unsafeGetTensorImpl());
    const auto expected = reference_adam.state().find(reference[i].unsafeGetTensorImpl());
    if (i + 1 == reference.size()) {  // never had a gradient: no state, unchanged
      EXPECT_EQ(found, states.end());
      EXPECT_EQ(expected, reference_adam.state().end());
      continue;
    }
    ASSERT_NE(found, states.end());
    const auto& ours = static_cast<const torch::optim::AdamParamState&>(*found->second);
    const auto& theirs = static_cast<const torch::optim::AdamParamState&>(*expected->second);
    EXPECT_EQ(ours.step(), theirs.step());
    EXPECT_TRUE(torch::allclose(ours.exp_avg(), theirs.exp_avg(), 1e-6, 1e-7));
    EXPECT_TRUE(torch::allclose(ours.exp_avg_sq(), theirs.exp_avg_sq(), 1e-6, 1e-7));
  }
}

TEST(FusedAdam, MatchesFloat64Definition) {
  const double lr = 0.05, beta1 = 0.8, beta2 = 0.95, eps = 1e-3, decay = 0.1;
  torch::manual_seed(2);
  auto parameter = torch::randn({6}).requires_grad_();
  std::vector<torch::Tensor> parameters = {parameter};
  torch::optim::Adam adam(parameters,
                          torch::optim::AdamOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(decay));
  auto p = parameter.detach().to(torch::kFloat64);
  auto m = torch::zeros_like(p), v = torch::zeros_like(p);
  for (int k = 1; k <= 4; ++k) {
    const auto g = torch::linspace(-1.0, 2.0, 6, torch::kFloat64) * k;
    parameter.mutable_grad() = g.to(torch::kFloat32);
    fused_adam_step(adam);
    const auto decayed = g + decay * p;
    m = beta1 * m + (1 - beta1) * decayed;
    v = beta2 * v + (1 - beta2) * decayed * decayed;
    p = p - lr / (1 - std::pow(beta1, k)) * m / (v.sqrt() / std::sqrt(1 - std::pow(beta2, k)) + eps);
  }
  EXPECT_LT((parameter.detach().to(torch::kFloat64) - p).abs().max().item<double>(), 1e-6);
}

TEST(FusedAdam, RefusesAmsgrad) {
  std::vector<torch::Tensor> parameters = {torch::zeros({2}).requires_grad_()};
  parameters[0].mutable_grad() = torch::ones({2});
  torch::optim::Adam adam(parameters, torch::optim::AdamOptions(1e-3).amsgrad(true));
  EXPECT_THROW(fused_adam_step(adam), Error);
}

}  // namespace
}  // namespace ddpm
