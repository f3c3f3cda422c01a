// L_simple: its value for known predictors (closed form), and that optimising it learns.
#include <gtest/gtest.h>

#include "diffusion/likelihood.h"
#include "diffusion/loss.h"
#include "model/unet.h"
#include "test_support.h"
#include "train/noise_prefetch.h"

namespace ddpm {
namespace {

TEST(SimpleLoss, ClosedFormValuesForKnownPredictors) {
  const NoiseSchedule schedule{DiffusionConfig{}};
  const auto x0 = torch::rand({64, 1, 8, 8}) * 2 - 1;
  const NoiseDraw draw = draw_noise(x0, schedule.timesteps(), NoiseKey{7, 0, 0});
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
  const auto a = draw_noise(x0, 1000, NoiseKey{42, 3, 0});
  const auto b = draw_noise(x0, 1000, NoiseKey{42, 3, 0});
  EXPECT_TRUE(torch::equal(a.t, b.t));
  EXPECT_TRUE(torch::equal(a.eps, b.eps));
  // Another seed or step draws otherwise.
  EXPECT_FALSE(torch::equal(a.eps, draw_noise(x0, 1000, NoiseKey{43, 3, 0}).eps));
  EXPECT_FALSE(torch::equal(a.eps, draw_noise(x0, 1000, NoiseKey{42, 4, 0}).eps));
}

TEST(SimpleLoss, ABatchSplitInPartsDrawsWhatTheWholeBatchDraws) {
  // Ranks of a data-parallel run each draw their part of the global batch: the parts,
  // concatenated, must be the whole batch's draw, whatever the split.
  const auto whole = draw_noise(torch::zeros({12, 2, 3, 3}), 1000, NoiseKey{5, 17, 0});
  for (const int parts : {2, 3, 4}) {
    std::vector<torch::Tensor> t, eps;
    const int64_t size = 12 / parts;
    for (int p = 0; p < parts; ++p) {
      const auto draw = draw_noise(torch::zeros({size, 2, 3, 3}), 1000, NoiseKey{5, 17, p * size});
      t.push_back(draw.t);
      eps.push_back(draw.eps);
    }
    EXPECT_TRUE(torch::equal(torch::cat(t), whole.t)) << parts << " parts";
    EXPECT_TRUE(torch::equal(torch::cat(eps), whole.eps)) << parts << " parts";
  }
  // 2,000 draws look like uniform t and standard normal eps (tolerances: 5 standard errors).
  const auto many = draw_noise(torch::zeros({2000, 1, 4, 4}), 1000, NoiseKey{1, 0, 0});
  EXPECT_NEAR(many.eps.mean().item<double>(), 0.0, 0.03);  // 5 / sqrt(32000)
  EXPECT_NEAR(many.eps.std().item<double>(), 1.0, 0.02);  // 5 / sqrt(2 * 32000)
  EXPECT_NEAR(many.t.to(torch::kDouble).mean().item<double>(), 499.5, 33.0);  // 5 * 289 / sqrt(2000)
  EXPECT_GE(many.t.min().item<int64_t>(), 0);
  EXPECT_LT(many.t.max().item<int64_t>(), 1000);
}

// TrainStep draws each step's noise through a NoisePrefetcher: its draws must be draw_noise's,
// prefetched for the key asked for next, and drawn on the spot for any other key or shape.
// L_hybrid = L_simple + lambda T L_t: its L_vlb part is T times the bound's term at the
// example's t (likelihood.h, the decoder at t = 0), and, with the mean frozen, it trains only the
// variance output; L_vlb alone trains both.
TEST(HybridLoss, AddsLambdaTTimesTheBoundTermAndTrainsOnlyTheVariances) {
  std::vector<double> betas(50);
  for (int t = 0; t < 50; ++t) betas[t] = 1e-3 + (0.2 - 1e-3) * t / 49.0;
  const NoiseSchedule schedule(betas);
  auto generator = at::detail::createCPUGenerator(4);
  const torch::Tensor x0 =
      torch::randint(0, 256, {3, 1, 4, 4}, generator).to(torch::kFloat32) / 127.5 - 1.0;
  const NoiseDraw draw{torch::tensor({0, 7, 49}, torch::kLong),
                       torch::randn({3, 1, 4, 4}, generator)};
  torch::Tensor scale = torch::full({1}, 0.3, torch::requires_grad());
  torch::Tensor variance = torch::full({1, 1, 4, 4}, 0.2, torch::requires_grad());
  const EpsilonPredictor model = [&](const torch::Tensor& x_t, const torch::Tensor&) {
    return torch::cat({x_t * scale, variance.expand_as(x_t)}, 1);
  };
  LossOptions simple, hybrid, vlb;
  hybrid.kind = LossKind::hybrid;
  vlb.kind = LossKind::vlb;
  hybrid.vlb_weight = 0.01;
  const torch::Tensor simple_losses = example_losses(model, schedule, x0, draw, simple);
  const torch::Tensor hybrid_losses = example_losses(model, schedule, x0, draw, hybrid);
  const torch::Tensor vlb_losses = example_losses(model, schedule, x0, draw, vlb);
  // The bound's terms, computed on their own.
  const torch::Tensor x_t = schedule.q_sample(x0, draw.t, draw.eps);
  const ModelOutput output = split_output(model(x_t, draw.t).detach(), 1);
  const ReverseGaussian p = reverse_gaussian(schedule, output, x_t, draw.t,
                                             {Prediction::eps, Variance::learned, false});
  const torch::Tensor terms = bound_term(schedule, x0, x_t, draw.t, p);
  EXPECT_TRUE(torch::allclose(vlb_losses.detach(), 50.0 * terms, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(hybrid_losses.detach(),
                              simple_losses.detach() + 0.01 * 50.0 * terms, 1e-5, 1e-6));
  // Gradients: the prediction's from L_simple alone; the variance's from L_vlb alone.
  const auto gradients = [&](const torch::Tensor& loss) {
    scale.mutable_grad() = torch::Tensor();
    variance.mutable_grad() = torch::Tensor();
    loss.sum().backward({}, /*retain_graph=*/true);
    return std::pair{scale.grad().defined() ? scale.grad().clone() : torch::zeros({1}),
                     variance.grad().defined() ? variance.grad().clone()
                                               : torch::zeros({1, 1, 4, 4})};
  };
  const auto [simple_scale, simple_variance] = gradients(simple_losses);
  const auto [hybrid_scale, hybrid_variance] = gradients(hybrid_losses);
  const auto [vlb_scale, vlb_variance] = gradients(vlb_losses);
  EXPECT_TRUE(torch::allclose(hybrid_scale, simple_scale, 1e-6, 1e-7));
  EXPECT_EQ(simple_variance.abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(torch::allclose(hybrid_variance, 0.01 * vlb_variance, 1e-5, 1e-8));
  EXPECT_GT(vlb_variance.abs().sum().item<float>(), 0.0f);
  EXPECT_GT(vlb_scale.abs().item<float>(), 0.0f);  // L_vlb alone trains the mean too
  // Importance weights multiply each example's loss before the batch mean.
  NoiseDraw weighted = draw;
  weighted.weight = torch::tensor({2.0f, 0.5f, 1.0f});
  EXPECT_NEAR(training_loss(model, schedule, x0, weighted, hybrid).item<float>(),
              (hybrid_losses.detach() * weighted.weight).mean().item<float>(), 1e-5);
}

TEST(NoisePrefetcher, HandsOutDrawNoisesDrawsPrefetchedOrNot) {
  const auto x0 = torch::zeros({5, 2, 3, 3});
  NoisePrefetcher prefetcher(50);
  const auto check = [&](const torch::Tensor& x, const NoiseKey& key, bool prefetched) {
    const NoiseDraw got = prefetcher.take(x, key);
    const NoiseDraw want = draw_noise(x, 50, key);
    EXPECT_EQ(prefetcher.took_prefetched(), prefetched) << "step " << key.step;
    EXPECT_TRUE(torch::equal(got.t, want.t)) << "step " << key.step;
    EXPECT_TRUE(torch::equal(got.eps, want.eps)) << "step " << key.step;
    EXPECT_EQ(got.eps.sizes(), x.sizes());
  };
  check(x0, {7, 0, 0}, false);  // nothing prefetched yet
  prefetcher.prefetch(x0, {7, 1, 0});
  check(x0, {7, 1, 0}, true);
  prefetcher.prefetch(x0, {7, 2, 0});
  check(x0, {7, 3, 0}, false);  // another step
  prefetcher.prefetch(x0, {7, 4, 0});
  check(x0.narrow(0, 0, 3), {7, 4, 0}, false);  // another batch size
  prefetcher.prefetch(x0, {7, 5, 5});
  check(x0, {7, 5, 0}, false);  // another first example
  prefetcher.prefetch(x0, {8, 6, 0});
  check(x0, {7, 6, 0}, false);  // another seed
  prefetcher.prefetch(x0, {7, 7, 0});
  prefetcher.prefetch(x0, {7, 8, 0});  // replaces the one before
  check(x0, {7, 8, 0}, true);
  prefetcher.prefetch(x0, {7, 9, 0});  // left in flight: the destructor waits for it
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
  std::vector<NoiseDraw> evaluation;
  for (int i = 0; i < 4; ++i) evaluation.push_back(draw_noise(x0, 1000, NoiseKey{99, i, 0}));
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
  for (int step = 0; step < 300; ++step) {
    optimizer.zero_grad();
    auto loss = simple_loss(predictor, schedule, x0, draw_noise(x0, 1000, NoiseKey{5, step, 0}));
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
