// L_simple: its value for known predictors (closed form), and that optimising it learns.
#include <gtest/gtest.h>

#include "ddpm/loss.h"
#include "ddpm/unet.h"
#include "test_support.h"

namespace ddpm {
namespace {

TEST(SimpleLoss, ClosedFormValuesForKnownPredictors) {
  const NoiseSchedule schedule{DiffusionConfig{}};
  auto generator = at::detail::createCPUGenerator(7);
  const auto x0 = torch::rand({64, 1, 8, 8}) * 2 - 1;
  const NoiseDraw draw = draw_noise(x0, schedule.timesteps(), generator);
  ASSERT_EQ(draw.t.sizes(), (std::vector<int64_t>{64}));
  EXPECT_GE(draw.t.min().item<int64_t>(), 0);
  EXPECT_LT(draw.t.max().item<int64_t>(), 1000);

  // Predicting zero costs E[eps^2], the mean of the drawn eps squared.
  const EpsilonPredictor zero = [](const torch::Tensor& x_t, const torch::Tensor&) {
    return torch::zeros_like(x_t);
  };
  EXPECT_NEAR(simple_loss(zero, schedule, x0, draw).item<double>(),
              draw.eps.pow(2).mean().item<double>(), 1e-6);

  // The oracle that knows x0 recovers eps from x_t exactly: loss ~ 0.
  const EpsilonPredictor oracle = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    return schedule.predict_eps_from_x0(x_t, t, x0);
  };
  EXPECT_LT(simple_loss(oracle, schedule, x0, draw).item<double>(), 1e-6);

  // A predictor off by a constant c costs mean((eps - (eps + c))^2) = c^2.
  const EpsilonPredictor shifted = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    return schedule.predict_eps_from_x0(x_t, t, x0) + 0.5;
  };
  EXPECT_NEAR(simple_loss(shifted, schedule, x0, draw).item<double>(), 0.25, 1e-4);
}

TEST(SimpleLoss, DrawsAreReproducibleFromTheSeed) {
  const auto x0 = torch::zeros({8, 1, 4, 4});
  auto first = at::detail::createCPUGenerator(42);
  auto second = at::detail::createCPUGenerator(42);
  const auto a = draw_noise(x0, 1000, first);
  const auto b = draw_noise(x0, 1000, second);
  EXPECT_TRUE(torch::equal(a.t, b.t));
  EXPECT_TRUE(torch::equal(a.eps, b.eps));
}

TEST(SimpleLoss, TrainingOnAFixedBatchDrivesTheLossDown) {
  // A small UNet memorises 8 fixed 16x16 images; the loss is measured on the same 32 fixed
  // (t, eps) draws before and after 300 Adam steps, so the comparison carries no sampling noise.
  torch::manual_seed(0);
  const ModelConfig model_config = testing::small_model_config();
  const DataConfig data = testing::image_config(1, 16, 16);
  UNet model(model_config, data);
  const NoiseSchedule schedule{DiffusionConfig{}};

  // Images with structure: stripes and blobs at different phases, in [-1, 1].
  const auto grid = torch::linspace(0, 3.14159, 16);
  const auto phases = torch::linspace(0, 3, 8).view({8, 1, 1, 1});
  const auto x0 = torch::sin(grid.view({1, 1, 16, 1}) * 2 + phases) *
                  torch::cos(grid.view({1, 1, 1, 16}) + phases);

  const EpsilonPredictor predictor = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    return model->forward(x_t, t);
  };
  auto evaluation_generator = at::detail::createCPUGenerator(99);
  std::vector<NoiseDraw> evaluation;
  for (int i = 0; i < 4; ++i) evaluation.push_back(draw_noise(x0, 1000, evaluation_generator));
  const auto evaluate = [&] {
    torch::NoGradGuard no_grad;
    double total = 0.0;
    for (const auto& draw : evaluation) {
      total += simple_loss(predictor, schedule, x0, draw).item<double>();
    }
    return total / double(evaluation.size());
  };

  const double before = evaluate();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(2e-3));
  auto generator = at::detail::createCPUGenerator(5);
  for (int step = 0; step < 300; ++step) {
    optimizer.zero_grad();
    auto loss = simple_loss(predictor, schedule, x0, draw_noise(x0, 1000, generator));
    loss.backward();
    optimizer.step();
  }
  const double after = evaluate();
  // At initialisation the model predicts 0, so the loss is E[eps^2] ~ 1.
  EXPECT_NEAR(before, 1.0, 0.05);
  EXPECT_LT(after, 0.5 * before) << "before " << before << ", after " << after;
}

}  // namespace
}  // namespace ddpm
