// Progressive distillation (distillation.h): the nested trailing grids, the target against the
// ddim sampler on a closed-form Gaussian teacher (float64, eps / x0 / v), the loss weights in
// closed form, one short round that brings a student's single step closer to its teacher's two,
// and the config's checks.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "config/config_json.h"
#include "diffusion/distillation.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "diffusion/solvers/solver.h"
#include "model/unet.h"
#include "test_support.h"
#include "train/distill_objective.h"
#include "train/distill_rounds.h"
#include "train/distill_setup.h"
#include "train/ema.h"
#include "train/train_step.h"
#include "train/trainer.h"

namespace ddpm {
namespace {

constexpr int kT = 1000;  // DiffusionConfig{}: the linear schedule of 1000 steps

// Continuous Gaussian data N(kMean, std^2) per pixel: E[x0 | x_t] in closed form,
// (s^2 a x_t + sigma^2 m) / (a^2 s^2 + sigma^2), given as `prediction` at each example's t.
EpsilonPredictor gaussian_teacher(const ScheduleTable& table, Prediction prediction, double std) {
  constexpr double kMean = 0.1;
  return [table, prediction, std](const torch::Tensor& x_t, const torch::Tensor& t) {
    const torch::Tensor steps = t.to(torch::kLong).cpu();
    std::vector<double> a_values, s_values;
    for (int64_t i = 0; i < steps.size(0); ++i) {
      a_values.push_back(table.sqrt_alpha_bar[steps[i].item<int64_t>()]);
      s_values.push_back(table.sqrt_one_minus_alpha_bar[steps[i].item<int64_t>()]);
    }
    const torch::Tensor a = torch::tensor(a_values, torch::kFloat64).view({-1, 1, 1, 1});
    const torch::Tensor s = torch::tensor(s_values, torch::kFloat64).view({-1, 1, 1, 1});
    const torch::Tensor x = x_t.to(torch::kFloat64);
    const double v2 = std * std;
    const torch::Tensor x0 = (x * a * v2 + s * s * kMean) / (a * a * v2 + s * s);
    const torch::Tensor eps = (x - a * x0) / s;
    if (prediction == Prediction::eps) return eps;
    if (prediction == Prediction::x0) return x0;
    return a * eps - s * x0;
  };
}

// A model whose x0 at z is the distillation target of `teacher` (the teacher's two-step map),
// given in `prediction`'s form: it is called at student grid points only.
EpsilonPredictor two_step_student(const EpsilonPredictor& teacher, const TimestepGrid& teacher_grid,
                                  const ScheduleTable& table, const DistillationOptions& options) {
  std::map<int64_t, int64_t> point_of;
  for (int k = 0; 2 * k < teacher_grid.steps(); ++k) {
    point_of[static_cast<int64_t>(teacher_grid.timesteps[2 * k])] = k;
  }
  return [=](const torch::Tensor& z, const torch::Tensor& t) {
    const torch::Tensor steps = t.to(torch::kLong).cpu();
    std::vector<int64_t> points;
    std::vector<double> a_values, s_values;
    for (int64_t i = 0; i < steps.size(0); ++i) {
      const int64_t step = steps[i].item<int64_t>();
      points.push_back(point_of.at(step));
      a_values.push_back(table.sqrt_alpha_bar[step]);
      s_values.push_back(table.sqrt_one_minus_alpha_bar[step]);
    }
    const torch::Tensor target =
        teacher_target(teacher, teacher_grid, z, torch::tensor(points, torch::kLong), options);
    const torch::Tensor a = torch::tensor(a_values, torch::kFloat64).view({-1, 1, 1, 1});
    const torch::Tensor s = torch::tensor(s_values, torch::kFloat64).view({-1, 1, 1, 1});
    const torch::Tensor eps = (z - a * target) / s;
    if (options.prediction == Prediction::eps) return eps;
    if (options.prediction == Prediction::x0) return target;
    return a * eps - s * target;
  };
}

torch::Tensor ddim_chain(const EpsilonPredictor& model, const NoiseSchedule& schedule, int steps,
                         const DistillationOptions& options, const torch::Tensor& x_T) {
  SamplerOptions sampler;
  sampler.kind = SamplerKind::ddim;
  sampler.steps = steps;
  sampler.spacing = Spacing::trailing;
  sampler.clip_denoised = options.clip;
  sampler.prediction = options.prediction;
  return run_sampler(model, schedule, sampler, x_T, [](int) -> torch::Tensor {
    ADD_FAILURE() << "DDIM with eta 0 draws no noise";
    return {};
  });
}

TEST(DistillationGrid, EachStudentGridIsEveryOtherPointOfItsTeachers) {
  const ScheduleTable table = NoiseSchedule(DiffusionConfig{}).table();
  for (int teacher = 2; teacher <= 512; teacher *= 2) {
    const TimestepGrid big = distillation_grid(table, teacher);
    const TimestepGrid small = distillation_grid(table, teacher / 2);
    ASSERT_EQ(big.steps(), teacher);
    EXPECT_EQ(big.timesteps.front(), kT - 1) << teacher;  // every chain starts from pure noise
    EXPECT_EQ(big.alpha_bar.back(), 1.0);                  // and ends at the clean image
    for (int k = 0; k < small.steps(); ++k) {
      EXPECT_EQ(small.timesteps[k], big.timesteps[2 * k]) << teacher << " point " << k;
      EXPECT_EQ(small.alpha_bar[k], big.alpha_bar[2 * k]);
    }
  }
  // The 4-step grid: t_i = (i + 1) 250 - 1, chain order.
  EXPECT_EQ(distillation_grid(table, 4).timesteps, (std::vector<double>{999, 749, 499, 249}));
}

// The student that returns the target as its x0 runs, under the ddim sampler on the N/2-step
// grid, exactly the teacher's N-step ddim chain (float64).
TEST(DistillationTarget, TheTwoStepStudentRepeatsTheTeachersChainForEveryPrediction) {
  const NoiseSchedule schedule{DiffusionConfig{}};
  const ScheduleTable table = schedule.table();
  const torch::Tensor x_T = torch::randn({3, 1, 4, 4}, at::detail::createCPUGenerator(11),
                                         torch::kFloat64);
  for (const Prediction prediction : {Prediction::eps, Prediction::x0, Prediction::v}) {
    for (const bool clip : {false, true}) {
      for (const int teacher_steps : {2, 8, 32}) {
        DistillationOptions options;
        options.prediction = prediction;
        options.clip = clip;
        options.channels = 1;
        // Narrow data with clipping, so that no target leaves [-1, 1] (where clipping would
        // make the student's step differ from the teacher's two by design).
        const EpsilonPredictor teacher = gaussian_teacher(table, prediction, clip ? 0.2 : 0.35);
        const TimestepGrid grid = distillation_grid(table, teacher_steps);
        const torch::Tensor by_teacher = ddim_chain(teacher, schedule, teacher_steps, options, x_T);
        const torch::Tensor by_student =
            ddim_chain(two_step_student(teacher, grid, table, options), schedule,
                       teacher_steps / 2, options, x_T);
        const double difference = (by_teacher - by_student).abs().max().item<double>();
        EXPECT_LT(difference, 1e-9) << choice_name(prediction) << " clip " << clip << ", "
                                    << teacher_steps << " teacher steps";
        EXPECT_GT(by_teacher.abs().max().item<double>(), 0.05);  // a real image, not zeros
      }
    }
  }
}

// One batched DDIM step with per-example noise levels is the ddim solver's step, also where
// x0 is clipped (x here is far outside [-1, 1], so it is).
TEST(DistillationStep, IsTheDdimSolversStepWithClipping) {
  const ScheduleTable table = NoiseSchedule(DiffusionConfig{}).table();
  const TimestepGrid grid = distillation_grid(table, 8);
  auto generator = at::detail::createCPUGenerator(3);
  const torch::Tensor x = torch::randn({2, 1, 4, 4}, generator, torch::kFloat64) * 3;
  const torch::Tensor output = torch::randn({2, 1, 4, 4}, generator, torch::kFloat64);
  const auto levels = [&](int point) {
    return noise_levels(torch::full({2}, grid.alpha_bar[point], torch::kFloat64), x);
  };
  for (const Prediction prediction : {Prediction::eps, Prediction::x0, Prediction::v}) {
    for (const bool clip : {false, true}) {
      SamplerOptions options;
      options.kind = SamplerKind::ddim;
      options.steps = 8;
      options.spacing = Spacing::trailing;
      options.clip_denoised = clip;
      options.prediction = prediction;
      const EpsilonPredictor model = [&](const torch::Tensor&, const torch::Tensor&) {
        return output;
      };
      const solvers::StepContext context{
          grid, options,
          [&](const torch::Tensor& at, int point) {
            return grid_output(model, grid, prediction, at, point);
          },
          [](int) { return torch::Tensor(); }};
      for (const int point : {2, 7}) {  // 7: the last step, to the clean image
        const torch::Tensor expected =
            solvers::make_ddim_solver()->step(point, x, context).x;
        const torch::Tensor got =
            ddim_step(prediction, output, x, levels(point), levels(point + 1), clip);
        EXPECT_LT((got - expected).abs().max().item<double>(), 1e-10)
            << choice_name(prediction) << " clip " << clip << " point " << point;
      }
      const torch::Tensor x0 = x0_from_prediction(prediction, output, x, levels(2));
      EXPECT_GT(x0.abs().max().item<double>(), 1.0);  // so clipping changes the step
    }
  }
}

// The loss of a student off the target by delta everywhere is w delta^2, w = max(SNR, 1) or
// SNR + 1 at the example's t (computed here from the schedule), and 0 on the target.
TEST(DistillationLoss, IsTheWeightedSquaredErrorOfX0) {
  const NoiseSchedule schedule{DiffusionConfig{}};
  const ScheduleTable table = schedule.table();
  DistillationOptions options;
  options.prediction = Prediction::v;
  options.clip = false;
  options.channels = 1;
  const EpsilonPredictor teacher = gaussian_teacher(table, Prediction::v, 0.35);
  const TimestepGrid grid = distillation_grid(table, 16);
  const torch::Tensor points = torch::tensor(std::vector<int64_t>{0, 1, 3, 5, 7}, torch::kLong);
  auto generator = at::detail::createCPUGenerator(5);
  const torch::Tensor x0 = torch::rand({5, 1, 4, 4}, generator, torch::kFloat64) * 2 - 1;
  const torch::Tensor eps = torch::randn({5, 1, 4, 4}, generator, torch::kFloat64);
  const EpsilonPredictor exact = two_step_student(teacher, grid, table, options);
  for (const DistillWeighting weighting :
       {DistillWeighting::truncated_snr, DistillWeighting::snr_plus_one}) {
    options.weighting = weighting;
    const torch::Tensor zero = distillation_losses(exact, teacher, grid, x0, eps, points, options);
    EXPECT_LT(zero.abs().max().item<double>(), 1e-12);
    constexpr double kDelta = 0.03;
    // x0 off by delta: x0 = a z - s v, so v off by -delta / s.
    const EpsilonPredictor off = [&](const torch::Tensor& z, const torch::Tensor& t) {
      std::vector<double> s;
      for (int64_t i = 0; i < t.size(0); ++i) {
        s.push_back(table.sqrt_one_minus_alpha_bar[t[i].item<int64_t>()]);
      }
      return exact(z, t) - kDelta / torch::tensor(s, torch::kFloat64).view({-1, 1, 1, 1});
    };
    for (int64_t i = 0; i < points.size(0); ++i) {
      const torch::Tensor one = points.narrow(0, i, 1);
      const torch::Tensor loss = distillation_losses(off, teacher, grid, x0.narrow(0, i, 1),
                                                     eps.narrow(0, i, 1), one, options);
      const double ab = grid.alpha_bar[2 * points[i].item<int64_t>()];
      const double snr = ab / (1.0 - ab);
      const double w = weighting == DistillWeighting::truncated_snr ? std::max(snr, 1.0) : snr + 1;
      EXPECT_NEAR(loss.item<double>(), w * kDelta * kDelta, 1e-5 * w * kDelta * kDelta)
          << "point " << points[i].item<int64_t>();
    }
  }
}

Config tiny_distill_config() {
  Config config;
  config.data = testing::image_config(1, 8, 8);
  config.model = testing::small_model_config();
  config.model.dropout = 0.0;
  config.diffusion.timesteps = 1000;
  config.diffusion.prediction = Prediction::v;
  config.train.batch_size = 16;
  config.train.lr = 1e-3;
  config.train.warmup_steps = 0;
  config.train.ema_decay = 0.0;
  config.distill.start_steps = 8;
  config.distill.end_steps = 4;
  config.distill.steps_per_round = 150;
  config.train.steps = 150;
  return student_config(config, 0);
}

// A UNet with every weight moved by noise: a fresh one's output convolution is zero, so it
// would predict 0 whatever its input and class.
void randomise(UNet& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  for (auto& parameter : model->parameters()) {
    parameter.add_(torch::randn(parameter.sizes(), generator) * 0.05);
  }
}

// Smooth 8x8 images in [-1, 1].
torch::Tensor smooth_images(int64_t count, uint64_t seed) {
  const torch::Tensor coarse =
      torch::rand({count, 1, 2, 2}, at::detail::createCPUGenerator(seed)) * 2 - 1;
  return torch::nn::functional::interpolate(
      coarse, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{8, 8})
                  .mode(torch::kBilinear).align_corners(true));
}

// The mean squared error in x0 of `model`'s single step against the teacher's two, on held-out
// images, noise and points.
double single_step_error(UNet& model, DistillationObjective& objective,
                         const NoiseSchedule& schedule) {
  torch::NoGradGuard no_grad;
  model->eval();
  const torch::Tensor x0 = smooth_images(64, 99);
  const torch::Tensor eps = torch::randn(x0.sizes(), at::detail::createCPUGenerator(98));
  const torch::Tensor points = torch::arange(64, torch::kLong) % 4;
  const TimestepGrid grid = distillation_grid(schedule.table(), 8);
  DistillationOptions options;
  options.prediction = Prediction::v;
  options.channels = 1;
  options.weighting = DistillWeighting::snr_plus_one;
  UNet teacher = objective.teacher();
  const EpsilonPredictor teacher_model = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return teacher->forward(x, t);
  };
  const EpsilonPredictor student = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return model->forward(x, t);
  };
  // With weights SNR + 1 the loss is the squared error of v, of one scale at every t.
  return distillation_losses(student, teacher_model, grid, x0, eps, points, options)
      .mean()
      .item<double>();
}

TEST(DistillationRound, TheStudentsSingleStepComesCloserToTheTeachersTwo) {
  torch::manual_seed(4);
  const Config config = tiny_distill_config();
  const NoiseSchedule schedule(config.diffusion);
  UNet teacher(config.model, config.data);  // a random network: its two steps differ from one
  randomise(teacher, 1);
  UNet student(config.model, config.data);
  UNet ema(config.model, config.data);
  copy_weights(*teacher, *student);
  copy_weights(*teacher, *ema);
  DistillationObjective objective(config, schedule, torch::kCPU);
  objective.start_round(0, *teacher);
  TrainStep step(student, ema, schedule, config.train, loss_options(config), Precision::fp32,
                 nullptr, &objective);
  const double before = single_step_error(student, objective, schedule);
  student->train();
  for (int64_t k = 0; k < config.distill.steps_per_round; ++k) {
    step.run(smooth_images(16, 1000 + k), {0, k, 0}, k);
  }
  const double after = single_step_error(student, objective, schedule);
  // The teacher's own single step is where the student started (it is the teacher's copy).
  // Measured: 0.0144 before, 0.0102 after 150 steps (0.71 of it); a student that learned
  // nothing, or the wrong target, would not move below 0.8.
  EXPECT_LT(after, 0.8 * before) << "before " << before << ", after " << after;
}

// A class-conditional teacher at guidance W: the objective's targets are those of the guided
// teacher u + W (c - u) on the images' classes, at timesteps on the student's points.
TEST(DistillationObjective, AGuidedTeacherGivesTheGuidedTargetsOfTheImagesClasses) {
  Config config = tiny_distill_config();
  config.model.num_classes = 2;
  config.distill.guidance = 2.5;
  const NoiseSchedule schedule(config.diffusion);
  torch::manual_seed(6);
  UNet teacher(config.model, config.data);
  UNet student(config.model, config.data);
  randomise(teacher, 2);
  randomise(student, 3);
  DistillationObjective objective(config, schedule, torch::kCPU);
  objective.start_round(0, *teacher);
  NoiseDraw draw{torch::zeros({6}, torch::kLong),
                 torch::randn({6, 1, 8, 8}, at::detail::createCPUGenerator(8))};
  objective.choose_timesteps(draw, {0, 3, 0});
  const TimestepGrid grid = distillation_grid(schedule.table(), 8);
  std::vector<int64_t> points;
  for (int64_t i = 0; i < 6; ++i) {
    int k = 0;
    while (grid.timesteps[2 * k] != draw.t[i].item<double>()) ++k;  // throws past the grid
    points.push_back(k);
  }
  const torch::Tensor labels = torch::tensor(std::vector<int64_t>{0, 1, 1, 0, 1, 0});
  const torch::Tensor none = torch::full({6}, int64_t{2});
  const EpsilonPredictor student_model = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return student->forward(x, t, labels);
  };
  const EpsilonPredictor guided = [&](const torch::Tensor& x, const torch::Tensor& t) {
    const torch::Tensor u = teacher->forward(x, t, none);
    return u + 2.5 * (teacher->forward(x, t, labels) - u);
  };
  DistillationOptions options;
  options.prediction = config.diffusion.prediction;
  options.channels = 1;
  const torch::Tensor x0 = smooth_images(6, 7);
  torch::NoGradGuard no_grad;
  const torch::Tensor got = objective.example_losses(student_model, x0, draw, labels);
  const torch::Tensor expected = distillation_losses(
      student_model, guided, grid, x0, draw.eps, torch::tensor(points), options);
  EXPECT_TRUE(torch::allclose(got, expected, 1e-4, 1e-7)) << got << expected;
  // The conditional teacher alone gives other targets.
  const EpsilonPredictor conditional = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return teacher->forward(x, t, labels);
  };
  const torch::Tensor unguided = distillation_losses(
      student_model, conditional, grid, x0, draw.eps, torch::tensor(points), options);
  EXPECT_FALSE(torch::allclose(got, unguided, 1e-3, 1e-6));
}

TEST(DistillConfig, ChecksItsKeysAndWhatTheyAskOfTheOthers) {
  const auto error = [](const std::vector<std::string>& overrides) {
    return testing::error_of([&] { default_config(overrides); });
  };
  const std::vector<std::string> base = {"distill.start_steps=8", "distill.end_steps=2",
                                         "distill.steps_per_round=5", "train.steps=10"};
  EXPECT_EQ(error(base), "(no error)");
  auto with = [&](const std::string& assignment) {
    std::vector<std::string> overrides = base;
    overrides.push_back(assignment);
    return error(overrides);
  };
  EXPECT_CONTAINS(with("distill.start_steps=6"), "distill.start_steps");
  EXPECT_CONTAINS(with("distill.start_steps=2048"), "power of two from 2 to diffusion.timesteps");
  EXPECT_CONTAINS(with("distill.end_steps=8"), "below distill.start_steps");
  EXPECT_CONTAINS(with("distill.end_steps=3"), "distill.end_steps");
  EXPECT_CONTAINS(with("train.steps=11"), "2 rounds x distill.steps_per_round (10");
  EXPECT_CONTAINS(with("distill.guidance=3"), "no classes");
  EXPECT_CONTAINS(with("distill.weighting=snr"), "truncated_snr");
  EXPECT_CONTAINS(with("train.timestep_sampling=loss_aware"), "student's grid");
  EXPECT_EQ(distillation_rounds(default_config(base).distill), 2);
  // Every distill key round-trips through JSON.
  std::vector<std::string> every = base;
  every.insert(every.end(), {"distill.weighting=snr_plus_one", "distill.guidance=2",
                             "model.num_classes=3"});
  const Config config = default_config(every);
  EXPECT_EQ(config_from_json(config_to_json(config)), config);
  EXPECT_EQ(config.distill.weighting, DistillWeighting::snr_plus_one);
  EXPECT_EQ(config.distill.guidance, 2.0);
  // A round's student config: ddim on its trailing grid, eta 0, guidance 1.
  const Config student = student_config(default_config(base), 1);
  EXPECT_EQ(student.sample.sampler, SamplerKind::ddim);
  EXPECT_EQ(student.sample.steps, 2);
  EXPECT_EQ(student.sample.spacing, Spacing::trailing);
  EXPECT_EQ(round_dir("run", 4), std::filesystem::path("run/rounds/steps_004"));
}

// configs/distill/: overlays of a teacher's config, which ddpm distill lays over the shipped
// model's.
TEST(DistillConfig, TheShippedOverlayLaysOverTheShippedModel) {
  const std::filesystem::path source = DDPM_SOURCE_DIR;
  const TrainSetup setup =
      prepare_distillation((source / "data/models/fashion_mnist_cpu.pt").string(),
                           (source / "configs/distill/fashion_mnist_cpu.json").string(), {}, "",
                           "unused_run_dir", false);
  EXPECT_EQ(setup.config.distill.start_steps, 64);
  EXPECT_EQ(setup.config.distill.end_steps, 1);
  EXPECT_EQ(setup.config.train.steps, 6 * setup.config.distill.steps_per_round);
  EXPECT_EQ(setup.config.sample.steps, 32);  // the first student's
  EXPECT_EQ(setup.config.model, setup.init.config.model);
  EXPECT_EQ(setup.config.diffusion.prediction, Prediction::v);
  EXPECT_EQ(std::filesystem::path(setup.config.data.path),
            (source / "data/fashion-mnist/train").lexically_normal());
  EXPECT_TRUE(setup.fine_tune);
}

}  // namespace
}  // namespace ddpm
