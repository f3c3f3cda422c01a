// Mixed precision: fp16's dynamic loss scaler against PyTorch's own update rule, a step that
// overflows and must leave everything untouched, fp16 and bf16 training and sampling on the CPU
// against fp32, resumption with the scale, and the stop when the scale collapses.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cmath>
#include <fstream>
#include <random>
#include <set>

#include "base/precision.h"
#include "config/config_json.h"
#include "diffusion/guidance.h"
#include "diffusion/schedule.h"
#include "formats/checkpoint.h"
#include "formats/weights.h"
#include "test_support.h"
#include "train/loss_scaler.h"
#include "train/train_step.h"
#include "train/trainer.h"

namespace ddpm {
namespace {

using testing::TempDir;

// The scaler's rule, written out: overflow -> scale * backoff, count 0; otherwise the count
// grows, and at `interval` the scale grows (if it stays finite in float32) and the count is 0.
struct ReferenceScaler {
  float scale;
  int64_t count = 0;
  void update(bool overflow, const LossScalerOptions& o) {
    if (overflow) {
      scale = static_cast<float>(scale * o.backoff);
      count = 0;
      return;
    }
    if (++count < o.interval) return;
    const float grown = static_cast<float>(scale * o.growth);
    if (std::isfinite(grown)) scale = grown;
    count = 0;
  }
};

TEST(LossScaler, FollowsPyTorchsUpdateRule) {
  // PyTorch's defaults (powers of two) and factors that round in float32, with a short interval
  // so that the scale grows often and also reaches float32's ceiling.
  const std::vector<LossScalerOptions> settings = {
      {65536.0, 2.0, 0.5, 4, 1.0}, {3.0e37, 1.7, 0.3, 3, 1.0}, {1.0, 3.0, 0.25, 1, 1e-10}};
  for (const LossScalerOptions& options : settings) {
    LossScaler scaler(options);
    ReferenceScaler reference{static_cast<float>(options.init_scale)};
    // at::_amp_update_scale_, the kernel behind torch.amp.GradScaler.update().
    torch::Tensor scale = torch::full({1}, options.init_scale, torch::kFloat);
    torch::Tensor tracker = torch::zeros({1}, torch::kInt);
    std::mt19937 random(7);
    for (int step = 0; step < 400; ++step) {
      const bool overflow = random() % 5 == 0;
      scaler.update(overflow);
      reference.update(overflow, options);
      torch::Tensor found = torch::full({1}, overflow ? 1.0f : 0.0f);
      at::_amp_update_scale_(scale, tracker, found, options.growth, options.backoff,
                             options.interval);
      ASSERT_EQ(static_cast<float>(scaler.scale()), scale.item<float>()) << "step " << step;
      ASSERT_EQ(scaler.state().good_steps, tracker.item<int>()) << "step " << step;
      ASSERT_EQ(static_cast<float>(scaler.scale()), reference.scale) << "step " << step;
    }
  }
  // Overflow halves; `interval` good steps double.
  LossScaler scaler({65536.0, 2.0, 0.5, 3, 1.0});
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 32768.0);
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 32768.0);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 65536.0);
  EXPECT_EQ(scaler.state().good_steps, 0);
}

TEST(LossScaler, ReportsTheCollapseBelowTheFloor) {
  LossScaler scaler({4.0, 2.0, 0.5, 2000, 1.0});
  EXPECT_FALSE(scaler.update(true));  // 2
  EXPECT_FALSE(scaler.update(true));  // 1: at the floor, not below it
  EXPECT_TRUE(scaler.update(true));   // 0.5
  EXPECT_EQ(scaler.scale(), 0.5);
  // Restoring a state continues from it.
  LossScaler restored({65536.0, 2.0, 0.5, 3, 1.0});
  restored.restore({1024.0, 2});
  restored.update(false);
  EXPECT_EQ(restored.scale(), 2048.0);
}

TEST(LossScaler, UnscalesAndFlagsNonFiniteGradients) {
  LossScaler scaler({1024.0, 2.0, 0.5, 2000, 1.0});
  const torch::Tensor a = torch::randn({5, 3}, torch::kDouble).to(torch::kFloat);
  const torch::Tensor b = torch::randn({7}, torch::kDouble).to(torch::kFloat);
  std::vector<torch::Tensor> gradients = {a * 1024.0f, b * 1024.0f};
  EXPECT_EQ(scaler.unscale(gradients).item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(gradients[0], a));  // division by a power of two is exact
  EXPECT_TRUE(torch::equal(gradients[1], b));
  for (const float bad : {INFINITY, -INFINITY, NAN}) {
    std::vector<torch::Tensor> spoiled = {a.clone(), b.clone()};
    spoiled[1][3] = bad;
    EXPECT_EQ(scaler.unscale(spoiled).item<float>(), 1.0f) << bad;
  }
  // The loss is multiplied by the scale.
  EXPECT_EQ(scaler.scale_loss(torch::full({}, 0.75f)).item<float>(), 768.0f);
}

// A small model and TrainStep driven directly, in fp16 on the CPU.
class Fp16Step : public ::testing::Test {
 protected:
  Fp16Step() {
    data_ = testing::image_config(1, 8, 8);
    model_config_ = testing::small_model_config();
    model_config_.dropout = 0.0;  // no random draws in the forward pass
    diffusion_.timesteps = 100;
    options_.lr = 1e-3;
    options_.warmup_steps = 0;
    options_.ema_decay = 0.9;
    options_.ema_warmup = false;
    options_.precision = Precision::fp16;
  }
  struct Models {
    UNet model, ema;
  };
  Models fresh() const {
    torch::manual_seed(5);
    Models models{UNet(model_config_, data_), UNet(model_config_, data_)};
    copy_weights(*models.model, *models.ema);
    return models;
  }
  static torch::Tensor batch() { return torch::rand({4, 1, 8, 8}) * 2 - 1; }
  static TensorMap weights(UNet& model) {
    TensorMap map;
    for (const auto& item : model->named_parameters()) map[item.key()] = item.value().clone();
    return map;
  }
  static void expect_equal(const TensorMap& a, const TensorMap& b, const std::string& what) {
    for (const auto& [name, tensor] : a) {
      EXPECT_TRUE(torch::equal(tensor, b.at(name))) << what << " " << name;
    }
  }
  DataConfig data_;
  ModelConfig model_config_;
  DiffusionConfig diffusion_;
  TrainConfig options_;
};

TEST_F(Fp16Step, AnOverflowSkipsExactlyThatStepAndTouchesNothing) {
  torch::manual_seed(11);
  const std::vector<torch::Tensor> batches = {batch(), batch(), batch(), batch()};
  // Step 2's images are far outside [-1, 1]: the forward pass overflows float16 (65504).
  const torch::Tensor huge = batches[2] * 1e6;
  const NoiseSchedule schedule(diffusion_);
  const LossOptions loss;

  Models a = fresh();
  TrainStep steps_a(a.model, a.ema, schedule, options_, loss, Precision::fp16);
  for (int64_t step = 0; step < 2; ++step) {
    const auto result = steps_a.run(batches[step], {1, step, 0}, step);
    EXPECT_TRUE(result.applied) << step;
    EXPECT_FALSE(result.overflow) << step;
    EXPECT_EQ(result.loss_scale, 65536.0);
  }
  const TensorMap model_before = weights(a.model), ema_before = weights(a.ema);
  const auto skipped = steps_a.run(huge, {1, 2, 0}, 2);
  EXPECT_FALSE(skipped.applied);
  EXPECT_TRUE(skipped.overflow);
  EXPECT_FALSE(skipped.scale_collapsed);
  EXPECT_EQ(skipped.loss_scale, 32768.0);
  EXPECT_EQ(skipped.ema_decay, 0.0);
  expect_equal(model_before, weights(a.model), "model after the skipped step");
  expect_equal(ema_before, weights(a.ema), "EMA after the skipped step");
  for (const auto& parameter : a.model->parameters()) {
    const auto& state = static_cast<const torch::optim::AdamParamState&>(
        *steps_a.optimizer().state().at(parameter.unsafeGetTensorImpl()));
    EXPECT_EQ(state.step(), 2);  // Adam's count did not move
  }
  const auto after = steps_a.run(batches[3], {1, 3, 0}, 3);
  EXPECT_TRUE(after.applied);

  // The same run without the bad step, at the scale the skip left: the same weights, bit for
  // bit, so the skipped step left no trace (no moment, no count, no EMA update).
  Models b = fresh();
  TrainStep steps_b(b.model, b.ema, schedule, options_, loss, Precision::fp16);
  for (int64_t step = 0; step < 2; ++step) steps_b.run(batches[step], {1, step, 0}, step);
  steps_b.loss_scaler()->restore({32768.0, 0});
  steps_b.run(batches[3], {1, 3, 0}, 3);
  expect_equal(weights(a.model), weights(b.model), "model");
  expect_equal(weights(a.ema), weights(b.ema), "EMA");
}

TEST_F(Fp16Step, LowPrecisionSamplingStaysCloseToFp32) {
  Models models = fresh();
  models.model->eval();
  torch::NoGradGuard no_grad;
  // The output convolutions start at zero (as diffusers' do): give them weights, or every
  // output would be 0 in any precision.
  for (auto& parameter : models.model->parameters()) {
    if (parameter.abs().max().item<float>() == 0.0f) parameter.normal_(0.0, 0.05);
  }
  const torch::Tensor x = torch::randn({4, 1, 8, 8});
  const torch::Tensor t = torch::tensor({3.0, 30.0, 60.0, 99.0});
  const torch::Tensor reference = guided_predictor(models.model, {}, 1.0)(x, t);
  // Relative to the output's scale: float16 keeps 11 significant bits, bfloat16 8.
  const double scale = reference.abs().max().item<double>();
  for (const auto& [precision, tolerance] :
       std::vector<std::pair<Precision, double>>{{Precision::fp16, 5e-3}, {Precision::bf16, 4e-2}}) {
    const torch::Tensor output = guided_predictor(models.model, {}, 1.0, precision)(x, t);
    EXPECT_EQ(output.scalar_type(), torch::kFloat) << precision_name(precision);
    const double error = (output - reference).abs().max().item<double>() / scale;
    EXPECT_LT(error, tolerance) << precision_name(precision);
    EXPECT_GT(error, 0.0) << precision_name(precision) << " did not run in low precision";
  }
  // The guard restores autocast's state.
  EXPECT_FALSE(at::autocast::is_autocast_enabled(c10::DeviceType::CPU));
}

class MixedPrecisionTraining : public ::testing::Test {
 protected:
  MixedPrecisionTraining() : temp_("mixed_precision") {
    testing::write_image_folder(temp_.path() / "images", 24, 8, 8);
  }
  Config config(int steps, std::vector<std::string> overrides) const {
    auto json = nlohmann::json::parse(testing::small_train_config(temp_.path() / "images", steps));
    for (const auto& assignment : overrides) apply_override(json, assignment);
    return config_from_json(json);
  }
  TrainSummary run(const Config& config, const std::string& name, bool resume,
                   const std::atomic<bool>* stop = nullptr, int64_t stop_at = -1) const {
    TrainRun run;
    run.run_dir = temp_.path() / name;
    run.resume = resume;
    run.command_line = "test";
    run.stop_requested = stop;
    std::atomic<bool>* flag = const_cast<std::atomic<bool>*>(stop);
    if (stop_at >= 0) {
      run.on_progress = [flag, stop_at](const TrainProgress& p) {
        if (p.step == stop_at) *flag = true;
      };
    }
    return train(config, run);
  }
  std::vector<nlohmann::json> metrics(const std::string& name) const {
    std::vector<nlohmann::json> lines;
    std::ifstream in(temp_.path() / name / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }
  TempDir temp_;
};

TEST_F(MixedPrecisionTraining, Fp16AndBf16EndNearTheFp32Loss) {
  const std::vector<std::string> common = {"train.log_every=5", "train.checkpoint_every=100"};
  auto with = [&](const std::string& precision) {
    auto overrides = common;
    overrides.push_back("train.precision=\"" + precision + "\"");
    return overrides;
  };
  run(config(20, with("fp32")), "fp32", false);
  run(config(20, with("fp16")), "fp16", false);
  run(config(20, with("bf16")), "bf16", false);
  const auto fp32 = metrics("fp32"), fp16 = metrics("fp16"), bf16 = metrics("bf16");
  ASSERT_EQ(fp32.size(), 4u);
  ASSERT_EQ(fp16.size(), 4u);
  ASSERT_EQ(bf16.size(), 4u);
  for (size_t i = 0; i < fp32.size(); ++i) {
    const double reference = fp32[i]["loss"].get<double>();
    // The same batches, noise and timesteps: only the rounding differs.
    EXPECT_NEAR(fp16[i]["loss"].get<double>(), reference, 0.02 * reference) << "line " << i;
    EXPECT_NEAR(bf16[i]["loss"].get<double>(), reference, 0.05 * reference) << "line " << i;
    EXPECT_EQ(fp16[i]["loss_scale"].get<double>(), 65536.0);
    EXPECT_EQ(fp16[i]["skipped_steps"].get<int64_t>(), 0);
    EXPECT_FALSE(fp32[i].contains("loss_scale"));
  }
  EXPECT_NE(fp16.back()["loss"].get<double>(), fp32.back()["loss"].get<double>());
}

TEST_F(MixedPrecisionTraining, ResumeContinuesWithTheSameScale) {
  // From 2^20 the first steps overflow and back off (to 2^16 at step 4); an interval of 2 then
  // makes the scale grow every other step until it overflows again (step 8 here), so the state
  // at the stop (scale and count) matters.
  const std::vector<std::string> overrides = {
      "train.precision=\"fp16\"", "train.loss_scale_interval=2", "train.checkpoint_every=100",
      "train.loss_scale_init=1048576"};
  run(config(9, overrides), "straight", false);
  std::atomic<bool> stop{false};
  const auto stopped = run(config(9, overrides), "resumed", false, &stop, 5);
  ASSERT_EQ(stopped.last_step, 5);
  const TrainingState saved = load_checkpoint(resolve_checkpoint(temp_.path() / "resumed"));
  const auto straight = metrics("straight");
  ASSERT_EQ(straight.size(), 9u);
  EXPECT_EQ(saved.loss_scale, straight[4]["loss_scale"].get<double>());
  EXPECT_EQ(saved.skipped_steps, straight[4]["skipped_steps"].get<int64_t>());
  run(config(9, overrides), "resumed", true);
  const auto resumed = metrics("resumed");
  ASSERT_EQ(resumed.size(), 9u);
  std::set<double> scales;
  for (size_t i = 0; i < straight.size(); ++i) {
    EXPECT_EQ(resumed[i]["loss_scale"], straight[i]["loss_scale"]) << "step " << i + 1;
    EXPECT_EQ(resumed[i]["skipped_steps"], straight[i]["skipped_steps"]) << "step " << i + 1;
    EXPECT_EQ(resumed[i]["loss"], straight[i]["loss"]) << "step " << i + 1;
    scales.insert(straight[i]["loss_scale"].get<double>());
  }
  EXPECT_GE(scales.size(), 3u) << "the scale should have changed during the run";
  EXPECT_GT(straight.back()["skipped_steps"].get<int64_t>(), 0) << "no step overflowed";
  const auto a = load_checkpoint(resolve_checkpoint(temp_.path() / "straight"));
  const auto b = load_checkpoint(resolve_checkpoint(temp_.path() / "resumed"));
  EXPECT_EQ(a.loss_scale, b.loss_scale);
  EXPECT_EQ(a.loss_scale_good_steps, b.loss_scale_good_steps);
  for (const auto& [name, tensor] : a.model) {
    EXPECT_TRUE(torch::equal(tensor, b.model.at(name))) << name;
  }
}

TEST_F(MixedPrecisionTraining, ACollapsedScaleStopsTheRunNamingTheStep) {
  // lr 1e30 sends the weights beyond float16's range after step 1, so every later step
  // overflows: 65536 -> 32768 (step 2), 16384 (3), 8192 (4, at the floor), 4096 (5, below).
  const std::string message = testing::error_of([&] {
    run(config(20, {"train.precision=\"fp16\"", "train.lr=1e30", "train.warmup_steps=0",
                    "train.loss_scale_min=8192", "train.on_nonfinite=\"skip\""}),
        "diverged", false);
  });
  EXPECT_CONTAINS(message, "at step 5");
  EXPECT_CONTAINS(message, "train.loss_scale_min");
  EXPECT_CONTAINS(message, "step_000000003.pt");  // the last good checkpoint
  const auto lines = metrics("diverged");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[3]["skipped_steps"].get<int64_t>(), 3);
  EXPECT_EQ(lines[3]["loss_scale"].get<double>(), 8192.0);
}

}  // namespace
}  // namespace ddpm
