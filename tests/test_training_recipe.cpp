// The training options beyond L_simple, against closed forms and re-computations:
//   - prediction types (eps, x0, v): targets and their conversion back to eps, in float64;
//   - min-SNR-gamma weighting: the same x0 error costs the same in every parameterisation;
//   - every sampler gives the same images from a model written in eps, x0 or v;
//   - EMA warm-up: diffusers' decay formula, and the update it makes;
//   - gradient accumulation: N micro-batches make the step of the whole batch;
//   - a run with all of them resumes exactly, and FID during training is `ddpm eval`'s FID.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "config/config_json.h"
#include "ddpm/error.h"
#include "diffusion/loss.h"
#include "diffusion/prediction.h"
#include "diffusion/sampler.h"
#include "formats/checkpoint.h"
#include "formats/image_io.h"
#include "test_support.h"
#include "train/ema.h"
#include "train/train_step.h"
#include "train/trainer.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const auto kDouble = torch::TensorOptions().dtype(torch::kFloat64);

// ---- prediction types --------------------------------------------------------------------

TEST(Prediction, TargetsConvertBackToTheNoiseAtEveryNoiseLevel) {
  torch::manual_seed(1);
  const torch::Tensor x0 = torch::rand({3, 2, 4}, kDouble) * 2 - 1;
  const torch::Tensor eps = torch::randn({3, 2, 4}, kDouble);
  for (const double alpha_bar : {0.9999, 0.5, 4e-5}) {
    const double a = std::sqrt(alpha_bar), s = std::sqrt(1 - alpha_bar);
    const torch::Tensor x_t = a * x0 + s * eps;
    const torch::Tensor a_t = torch::full({}, a, kDouble), s_t = torch::full({}, s, kDouble);
    // v = a eps - s x0 (Salimans & Ho 2022, eq. 7 of section 4), written out here.
    EXPECT_TRUE(torch::allclose(prediction_target(Prediction::v, x0, eps, a_t, s_t),
                                a * eps - s * x0, 0, 1e-15));
    EXPECT_TRUE(torch::equal(prediction_target(Prediction::x0, x0, eps, a_t, s_t), x0));
    EXPECT_TRUE(torch::equal(prediction_target(Prediction::eps, x0, eps, a_t, s_t), eps));
    for (const Prediction prediction : {Prediction::eps, Prediction::x0, Prediction::v}) {
      const torch::Tensor target = prediction_target(prediction, x0, eps, a_t, s_t);
      const torch::Tensor back = eps_from_prediction(prediction, target, x_t, alpha_bar);
      EXPECT_LT((back - eps).abs().max().item<double>(), 1e-9)
          << choice_name(prediction) << " at alpha_bar " << alpha_bar;
    }
  }
  EXPECT_EQ(choice_from_name<Prediction>("v", "diffusion.prediction"), Prediction::v);
  EXPECT_THROW(choice_from_name<Prediction>("velocity", "diffusion.prediction"), Error);
}

// A model whose x0 estimate is x0 + delta, in the parameterisation `prediction`: the same
// error written three ways.
EpsilonPredictor offset_model(Prediction prediction, const NoiseSchedule& schedule,
                              const torch::Tensor& x0, const torch::Tensor& delta) {
  return [=, &schedule](const torch::Tensor& x_t, const torch::Tensor& t) {
    const auto& table = schedule.table();
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < x_t.size(0); ++i) {
      const int64_t step = t[i].item<int64_t>();
      const double a = table.sqrt_alpha_bar[step], s = table.sqrt_one_minus_alpha_bar[step];
      const torch::Tensor x0_hat = x0[i] + delta[i];
      const torch::Tensor eps_hat = (x_t[i] - a * x0_hat) / s;
      if (prediction == Prediction::x0) rows.push_back(x0_hat);
      if (prediction == Prediction::eps) rows.push_back(eps_hat);
      if (prediction == Prediction::v) rows.push_back(a * eps_hat - s * x0_hat);
    }
    return torch::stack(rows);
  };
}

TEST(MinSnrLoss, TheSameX0ErrorCostsTheSameInEveryParameterisation) {
  const NoiseSchedule schedule{DiffusionConfig{}};
  torch::manual_seed(2);
  const torch::Tensor x0 = torch::rand({6, 1, 4, 4}, kDouble) * 2 - 1;
  const torch::Tensor delta = torch::randn({6, 1, 4, 4}, kDouble) * 0.1;
  NoiseDraw draw;
  draw.t = torch::tensor({0, 3, 40, 200, 600, 999}, torch::kLong);  // SNR from 1e4 to 4e-5
  draw.eps = torch::randn({6, 1, 4, 4}, kDouble);
  // The closed forms, from the float64 table: SNR = ab / (1 - ab); per example the squared x0
  // error e = mean(delta^2) costs SNR e as eps, e as x0, (SNR + 1) e as v; min-SNR makes each
  // min(SNR, 5) e.
  double min_snr = 0, plain[3] = {0, 0, 0};
  for (int i = 0; i < 6; ++i) {
    const double ab = schedule.table().alpha_bar[draw.t[i].item<int64_t>()];
    const double snr = ab / (1 - ab), e = delta[i].square().mean().item<double>();
    min_snr += std::min(snr, 5.0) * e / 6;
    plain[0] += snr * e / 6;
    plain[1] += e / 6;
    plain[2] += (snr + 1) * e / 6;
  }
  const Prediction kinds[3] = {Prediction::eps, Prediction::x0, Prediction::v};
  for (int k = 0; k < 3; ++k) {
    const EpsilonPredictor model = offset_model(kinds[k], schedule, x0, delta);
    const double weighted =
        training_loss(model, schedule, x0, draw, {kinds[k], true, 5.0}).item<double>();
    const double unweighted =
        training_loss(model, schedule, x0, draw, {kinds[k], false, 5.0}).item<double>();
    // float32 buffers and targets: 1e-4 relative (eps at t = 0 divides by sqrt(1e-4)).
    EXPECT_NEAR(weighted, min_snr, 1e-4 * min_snr) << choice_name(kinds[k]);
    EXPECT_NEAR(unweighted, plain[k], 1e-4 * plain[k]) << choice_name(kinds[k]);
  }
  // eps without weighting is L_simple itself.
  const EpsilonPredictor eps_model = offset_model(Prediction::eps, schedule, x0, delta);
  EXPECT_NEAR(training_loss(eps_model, schedule, x0, draw, {}).item<double>(),
              simple_loss(eps_model, schedule, x0, draw).item<double>(), 1e-12);
}

// ---- every sampler with every prediction type --------------------------------------------

TEST(PredictionSampling, EverySamplerGivesTheSameImagesFromEpsX0AndVModels) {
  // Gaussian data N(mu, sd^2) per pixel has the optimal eps predictor
  // E[eps | x_t] = s (x_t - a mu) / (a^2 sd^2 + s^2), and x0 = (x_t - s eps) / a; the model
  // reads alpha_bar at the grid point whose timestep it is called with.
  const NoiseSchedule schedule{DiffusionConfig{}};
  const torch::Tensor mu = torch::linspace(-0.5, 0.5, 8, kDouble).reshape({1, 1, 2, 4});
  const torch::Tensor sd = torch::linspace(0.1, 0.4, 8, kDouble).reshape({1, 1, 2, 4});
  torch::manual_seed(3);
  const torch::Tensor x_T = torch::randn({2, 1, 2, 4}, kDouble);
  for (const SamplerInfo& info : all_samplers()) {
    SamplerOptions options;
    options.kind = info.kind;
    options.steps = 8;
    options.spacing = info.sigma_space ? Spacing::karras : Spacing::uniform;
    options.clip_denoised = false;
    const TimestepGrid grid =
        timestep_grid(schedule.table(), options.kind, options.steps, options.spacing);
    const auto alpha_bar_at = [&](double t) {
      size_t nearest = 0;
      for (size_t i = 0; i < grid.timesteps.size(); ++i) {
        if (std::abs(grid.timesteps[i] - t) < std::abs(grid.timesteps[nearest] - t)) nearest = i;
      }
      return grid.alpha_bar[nearest];
    };
    std::vector<torch::Tensor> images;
    for (const Prediction prediction : {Prediction::eps, Prediction::x0, Prediction::v}) {
      const EpsilonPredictor model = [&](const torch::Tensor& x, const torch::Tensor& t) {
        const double ab = alpha_bar_at(t[0].item<double>());
        const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
        const torch::Tensor eps = s * (x - a * mu) / (ab * sd * sd + (1 - ab));
        const torch::Tensor x0 = (x - s * eps) / a;
        if (prediction == Prediction::x0) return x0;
        if (prediction == Prediction::v) return a * eps - s * x0;
        return eps;
      };
      options.prediction = prediction;
      images.push_back(run_sampler(model, schedule, options, x_T.clone(), [&](int step) {
        auto generator = at::detail::createCPUGenerator(100 + step);
        return torch::randn({2, 1, 2, 4}, generator, kDouble);
      }));
    }
    EXPECT_LT((images[1] - images[0]).abs().max().item<double>(), 1e-8) << info.name << " x0";
    EXPECT_LT((images[2] - images[0]).abs().max().item<double>(), 1e-8) << info.name << " v";
  }
}

// ---- EMA warm-up ---------------------------------------------------------------------------

TEST(EmaWarmup, DecayFollowsDiffusersEmaModelAndTheUpdateUsesIt) {
  // diffusers' EMAModel.get_decay(optimization_step k), inv_gamma 1, update_after_step 0:
  // step = k - 1; 0 when step <= 0, else 1 - (1 + step)^-power, capped at decay.
  const auto diffusers = [](int64_t k, double power, double cap) {
    const int64_t step = k - 1;
    if (step <= 0) return 0.0;
    return std::min(cap, 1 - std::pow(1.0 + double(step), -power));
  };
  const EmaOptions options{0.999, true, 0.75};
  for (const int64_t k : {1, 2, 3, 10, 464, 9999, 10000, 50000}) {
    EXPECT_NEAR(ema_decay_at(options, k), diffusers(k, 0.75, 0.999), 1e-15) << "k " << k;
  }
  EXPECT_NEAR(ema_decay_at({0.9999, true, 2.0 / 3.0}, 8), 1 - std::pow(8.0, -2.0 / 3.0), 1e-15);
  EXPECT_EQ(ema_decay_at({0.99, false, 0.75}, 1), 0.99);  // without warm-up: constant

  torch::nn::Linear model(2, 1), average(2, 1);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.fill_(1.0);
  for (auto& p : average->parameters()) p.fill_(3.0);
  ExponentialMovingAverage ema(*model, *average, options);
  EXPECT_EQ(ema.update(1), 0.0);  // the first update copies the weights
  EXPECT_TRUE(torch::allclose(average->weight, torch::ones({1, 2})));
  for (auto& p : model->parameters()) p.fill_(2.0);
  const double decay = ema.update(2);
  EXPECT_NEAR(decay, 1 - std::pow(2.0, -0.75), 1e-15);
  EXPECT_NEAR(average->bias.item<double>(), decay * 1.0 + (1 - decay) * 2.0, 1e-6);
}

// ---- gradient accumulation ---------------------------------------------------------------

TEST(GradAccumulation, FourMicroBatchesMakeTheStepOfTheWholeBatch) {
  // One process, batch 8: 4 micro-batches of 2 against the whole batch at once, 3 steps, with
  // v prediction and min-SNR so the weighted path is the one split. Dropout is 0, so only the
  // summation order differs; the tolerance is the data-parallel test's (Adam magnifies
  // last-bit differences where a gradient is small).
  const DataConfig data = testing::image_config(1, 8, 8);
  ModelConfig model_config = testing::small_model_config();
  model_config.attention_resolutions = {4};
  model_config.dropout = 0.0;
  TrainConfig options;
  options.lr = 1e-3;
  options.warmup_steps = 0;
  options.ema_decay = 0.5;
  const NoiseSchedule schedule{DiffusionConfig{}};
  const LossOptions loss{Prediction::v, true, 5.0};
  torch::manual_seed(5);
  const torch::Tensor x0 = torch::rand({8, 1, 8, 8}) * 2 - 1;
  std::vector<double> first_losses;
  const auto train = [&](int parts, std::vector<double>& norms) {
    torch::manual_seed(11);
    UNet model(model_config, data), ema(model_config, data);
    copy_weights(*model, *ema);
    TrainConfig split = options;
    split.grad_accumulation = parts;
    TrainStep step(model, ema, schedule, split, loss, Precision::fp32);
    for (int s = 0; s < 3; ++s) {
      const auto result = step.run(x0, NoiseKey{1, s, 0}, s);
      norms.push_back(result.grad_norm);
      if (s == 0) first_losses.push_back(result.loss.item<double>());
    }
    return std::make_pair(model, ema);
  };
  std::vector<double> whole_norms, split_norms;
  const auto [whole, whole_ema] = train(1, whole_norms);
  const auto [split, split_ema] = train(4, split_norms);
  EXPECT_NEAR(first_losses[1], first_losses[0], 1e-5 * first_losses[0]);
  for (int s = 0; s < 3; ++s) {
    EXPECT_NEAR(split_norms[s], whole_norms[s], 1e-5 * whole_norms[s]) << "step " << s;
  }
  const auto a = whole->parameters(), b = split->parameters();
  const auto ea = whole_ema->parameters(), eb = split_ema->parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 0.0, 5e-5)) << "parameter " << i;
    EXPECT_TRUE(torch::allclose(ea[i], eb[i], 0.0, 5e-5)) << "EMA parameter " << i;
  }
  // A micro-batch count that does not divide the batch is refused, naming the key.
  TrainConfig uneven = options;
  uneven.grad_accumulation = 3;
  torch::manual_seed(11);
  UNet model(model_config, data), ema(model_config, data);
  TrainStep step(model, ema, schedule, uneven, loss, Precision::fp32);
  try {
    step.run(x0, NoiseKey{1, 0, 0}, 0);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("train.grad_accumulation"), std::string::npos);
  }
}

// ---- whole runs ----------------------------------------------------------------------------

class RecipeRun : public ::testing::Test {
 protected:
  RecipeRun() : temp_("recipe") {
    testing::write_image_folder(images(), 24, 8, 8);
    testing::write_feature_net(net(), testing::kBlockMeansForward);
  }
  fs::path images() const { return temp_.path() / "images"; }
  fs::path net() const { return temp_.path() / "net.pt"; }
  fs::path dir(const std::string& name) const { return temp_.path() / name; }
  // The small test config with v prediction, min-SNR, 2 micro-batches and EMA warm-up, no
  // dropout (so a resumed run redraws nothing differently).
  Config config(int steps, std::vector<std::string> overrides = {}) const {
    auto json = nlohmann::json::parse(testing::small_train_config(images(), steps));
    for (const char* assignment :
         {"diffusion.prediction=v", "train.loss_weighting=min_snr", "train.grad_accumulation=2",
          "train.ema_warmup=true", "model.dropout=0"}) {
      apply_override(json, assignment);
    }
    for (const auto& assignment : overrides) apply_override(json, assignment);
    return config_from_json(json);
  }
  static std::vector<nlohmann::json> metrics(const fs::path& run_dir) {
    std::vector<nlohmann::json> lines;
    std::ifstream in(run_dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }
  TempDir temp_;
};

TEST_F(RecipeRun, EveryOptionTogetherResumesExactlyAndLogsTheEmaDecay) {
  const auto train_run = [&](const fs::path& run_dir, bool resume, const std::atomic<bool>* stop,
                             std::function<void(const TrainProgress&)> on_progress) {
    TrainRun run;
    run.run_dir = run_dir;
    run.resume = resume;
    run.stop_requested = stop;
    run.on_progress = std::move(on_progress);
    return train(config(7), run);
  };
  train_run(dir("straight"), false, nullptr, {});
  std::atomic<bool> stop{false};
  train_run(dir("resumed"), false, &stop, [&](const TrainProgress& progress) {
    if (progress.step == 4) stop = true;
  });
  EXPECT_EQ(train_run(dir("resumed"), true, nullptr, {}).last_step, 7);
  const auto a = load_checkpoint(checkpoint_file(dir("straight"), 7));
  const auto b = load_checkpoint(checkpoint_file(dir("resumed"), 7));
  for (const auto& [name, tensor] : a.ema) {
    EXPECT_TRUE(torch::equal(tensor, b.ema.at(name))) << name;
  }
  for (const auto& [name, tensor] : a.model) {
    EXPECT_TRUE(torch::equal(tensor, b.model.at(name))) << name;
  }
  const auto straight = metrics(dir("straight")), resumed = metrics(dir("resumed"));
  ASSERT_EQ(straight.size(), 7u);
  ASSERT_EQ(resumed.size(), 7u);
  for (size_t i = 0; i < straight.size(); ++i) {
    EXPECT_EQ(straight[i]["loss"], resumed[i]["loss"]) << "step " << i + 1;
    // train.ema_decay 0.9 caps 1 - k^-0.75: 0, 0.405, 0.561, 0.646, 0.701, 0.739, 0.767.
    const double k = double(i + 1);
    EXPECT_NEAR(straight[i]["ema_decay"].get<double>(), std::min(0.9, 1 - std::pow(k, -0.75)),
                1e-12);
    EXPECT_EQ(straight[i]["ema_decay"], resumed[i]["ema_decay"]);
  }
  // The checkpoint records the prediction type, and sampling reads it from there.
  EXPECT_EQ(a.config.diffusion.prediction, Prediction::v);
}

TEST_F(RecipeRun, QualityDuringTrainingIsDdpmEvalOfTheSameSamples) {
  const fs::path run_dir = dir("run");
  const Config trained = config(6, {"train.eval_every=3", "train.eval_samples=12",
                                    "train.eval_real=" + images().string(),
                                    "train.eval_feature_net=" + net().string(),
                                    "train.eval_nll_images=3"});
  TrainRun run;
  run.run_dir = run_dir;
  train(trained, run);
  std::vector<nlohmann::json> evaluations;
  for (const auto& line : metrics(run_dir)) {
    if (line.contains("fid")) evaluations.push_back(line);
  }
  ASSERT_EQ(evaluations.size(), 2u);
  EXPECT_EQ(evaluations[0]["step"], 3);
  EXPECT_EQ(evaluations[1]["step"], 6);
  EXPECT_NE(evaluations[0]["fid"], evaluations[1]["fid"]);  // the EMA moved between them

  // The final evaluation again, independently: ddpm sample writes the same 12 images (the
  // sample section's sampler and seed, EMA weights) as PNGs, and ddpm eval scores them.
  const auto sampled = testing::run_ddpm("sample --checkpoint " + run_dir.string() +
                                         " --num 12 --batch 5 --threads 1 --out " +
                                         dir("samples").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  const fs::path json = dir("eval.json");
  const auto scored = testing::run_ddpm("eval --real " + images().string() + " --generated " +
                                        dir("samples").string() + " --features " +
                                        net().string() + " --threads 1 --json " + json.string());
  ASSERT_EQ(scored.exit_code, 0) << scored.output;
  std::ifstream in(json);
  const nlohmann::json reference = nlohmann::json::parse(in);
  const nlohmann::json& last = evaluations[1];
  EXPECT_NEAR(last["fid"].get<double>(), reference["fid"].get<double>(),
              1e-6 * reference["fid"].get<double>());
  EXPECT_NEAR(last["kid_mean"].get<double>(), reference["kid_mean"].get<double>(), 1e-9);
  EXPECT_EQ(last["precision"], reference["precision"]);
  EXPECT_EQ(last["recall"], reference["recall"]);

  // Its bits/dim (train.eval_nll_images) is ddpm nll of the first 3 training images with the
  // sample seed's draws, every term.
  ASSERT_TRUE(last.contains("bits_per_dim"));
  EXPECT_EQ(last["nll_images"], 3);
  const fs::path nll_json = dir("nll.json");
  const auto nll = testing::run_ddpm("nll --checkpoint " + run_dir.string() + " --data " +
                                     images().string() + " --num 3 --threads 1 --seed " +
                                     std::to_string(trained.sample.seed) + " --json " +
                                     nll_json.string());
  ASSERT_EQ(nll.exit_code, 0) << nll.output;
  const nlohmann::json bound = nlohmann::json::parse(testing::read_text(nll_json));
  EXPECT_NEAR(last["bits_per_dim"].get<double>(), bound["bits_per_dim"].get<double>(), 1e-9);
  EXPECT_NEAR(last["bits_per_dim_se"].get<double>(), bound["standard_error"].get<double>(),
              1e-9);
  EXPECT_NE(evaluations[0]["bits_per_dim"], last["bits_per_dim"]);
}

TEST_F(RecipeRun, AnUnusableEvaluationSetupIsRefusedBeforeTheRunStarts) {
  const auto refused = [&](std::vector<std::string> overrides, const std::string& key) {
    overrides.push_back("train.eval_every=2");
    TrainRun run;
    run.run_dir = dir("refused");
    try {
      train(config(4, overrides), run);
      ADD_FAILURE() << "expected an error naming " << key;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find(key), std::string::npos) << error.what();
    }
    EXPECT_FALSE(fs::exists(dir("refused"))) << key;
  };
  refused({"train.eval_real=" + (temp_.path() / "missing").string(),
           "train.eval_feature_net=" + net().string()},
          "train.eval_real");
  refused({"train.eval_real=" + images().string(),
           "train.eval_feature_net=" + (temp_.path() / "none.pt").string()},
          "train.eval_feature_net");
  // A network made for another image size.
  testing::write_feature_net(dir("net16.pt"), testing::kBlockMeansForward, {1, 16, 16});
  refused({"train.eval_real=" + images().string(),
           "train.eval_feature_net=" + dir("net16.pt").string()},
          "train.eval_feature_net");
  // eval_every without eval_real is a config error at parse time.
  auto json = nlohmann::json::parse(testing::small_train_config(images(), 4));
  apply_override(json, "train.eval_every=2");
  EXPECT_THROW(config_from_json(json), Error);
}

TEST_F(RecipeRun, ASamplingCheckpointSamplesLikeItsRunAtAFractionOfTheSize) {
  const fs::path run_dir = dir("run");
  TrainRun run;
  run.run_dir = run_dir;
  train(config(3), run);
  const fs::path small = dir("model.pt");
  const auto exported = testing::run_ddpm("export --checkpoint " + run_dir.string() +
                                          " --out " + small.string());
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  const auto state = load_checkpoint(small);
  const auto full = load_checkpoint(checkpoint_file(run_dir, 3));
  EXPECT_TRUE(state.optimizer.empty());
  EXPECT_EQ(state.step, 3);
  for (const auto& [name, tensor] : full.ema) {
    EXPECT_TRUE(torch::equal(tensor, state.ema.at(name))) << name;
    EXPECT_TRUE(torch::equal(tensor, state.model.at(name))) << name;
  }
  EXPECT_LT(fs::file_size(small), fs::file_size(checkpoint_file(run_dir, 3)) / 2);
  // Both sample the same images.
  for (const auto& [source, out] : {std::pair{run_dir, dir("a")}, std::pair{small, dir("b")}}) {
    const auto sampled = testing::run_ddpm("sample --checkpoint " + source.string() +
                                           " --num 2 --threads 1 --out " + out.string());
    ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  }
  for (const char* name : {"sample_00000.png", "sample_00001.png"}) {
    EXPECT_EQ(read_image(dir("a") / name, 1).pixels, read_image(dir("b") / name, 1).pixels);
  }
  const auto again = testing::run_ddpm("export --checkpoint " + run_dir.string() + " --out " +
                                       small.string());
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("--overwrite"), std::string::npos) << again.output;
}

}  // namespace
}  // namespace ddpm
