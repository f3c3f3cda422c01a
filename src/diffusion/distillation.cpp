// Progressive distillation's targets and losses; see distillation.h.
#include "diffusion/distillation.h"

#include <vector>

#include "diffusion/prediction.h"

namespace ddpm {
namespace {

// Per-example values of a per-point table (float64 or int64) at `points` (on their device, as
// the table is when it comes from the objective: then no copy is made).
torch::Tensor at_points(const torch::Tensor& table, const torch::Tensor& points) {
  return table.to(points.device()).index_select(0, points);
}

// The noise levels of the grid's points `points` (alpha_bar 1 at point N, the clean image).
NoiseLevels levels_at(const GridTables& grid, const torch::Tensor& points,
                      const torch::Tensor& like) {
  return noise_levels(at_points(grid.alpha_bar, points), like);
}

}  // namespace

GridTables::GridTables(const TimestepGrid& grid, torch::Device device) {
  std::vector<int64_t> steps;
  for (double t : grid.timesteps) steps.push_back(static_cast<int64_t>(t));
  alpha_bar = torch::tensor(grid.alpha_bar, torch::kFloat64).to(device);
  timesteps = torch::tensor(steps, torch::kLong).to(device);
}

TimestepGrid distillation_grid(const ScheduleTable& table, int teacher_steps) {
  return timestep_grid(table, SamplerKind::ddim, teacher_steps, Spacing::trailing);
}

NoiseLevels noise_levels(const torch::Tensor& alpha_bar, const torch::Tensor& like) {
  const torch::Tensor ab = alpha_bar.to(torch::kFloat64).reshape({-1, 1, 1, 1});
  return {ab.sqrt().to(like.device(), like.scalar_type()),
          (1.0 - ab).clamp_min(0.0).sqrt().to(like.device(), like.scalar_type())};
}

torch::Tensor x0_from_prediction(Prediction prediction, const torch::Tensor& output,
                                 const torch::Tensor& x_t, const NoiseLevels& at) {
  switch (prediction) {
    case Prediction::eps:
      return (x_t - at.s * output) / at.a;
    case Prediction::x0:
      return output;
    case Prediction::v:
      return at.a * x_t - at.s * output;
  }
  return output;
}

torch::Tensor ddim_step(Prediction prediction, const torch::Tensor& output,
                        const torch::Tensor& x, const NoiseLevels& from, const NoiseLevels& to,
                        bool clip) {
  torch::Tensor x0 = x0_from_prediction(prediction, output, x, from);
  if (clip) x0 = x0.clamp(-1.0, 1.0);
  const torch::Tensor eps = (x - from.a * x0) / from.s;
  return to.a * x0 + to.s * eps;
}

torch::Tensor distillation_target(const torch::Tensor& z, const torch::Tensor& z_next,
                                  const NoiseLevels& from, const NoiseLevels& to) {
  const torch::Tensor ratio = to.s / from.s;
  return (z_next - ratio * z) / (to.a - ratio * from.a);
}

torch::Tensor distillation_weight(DistillWeighting weighting, const NoiseLevels& at) {
  const torch::Tensor snr = (at.a * at.a / (at.s * at.s)).flatten();
  return weighting == DistillWeighting::truncated_snr ? snr.clamp_min(1.0) : snr + 1.0;
}

torch::Tensor teacher_target(const EpsilonPredictor& teacher, const GridTables& grid,
                             const torch::Tensor& z, const torch::Tensor& points,
                             const DistillationOptions& options) {
  const torch::Tensor first = points * 2;
  const NoiseLevels t = levels_at(grid, first, z);
  const NoiseLevels t1 = levels_at(grid, first + 1, z);
  const NoiseLevels t2 = levels_at(grid, first + 2, z);  // the clean image after the last point
  torch::NoGradGuard no_grad;
  const auto prediction = [&](const torch::Tensor& x, const torch::Tensor& point) {
    const torch::Tensor output = teacher(x, at_points(grid.timesteps, point));
    return split_output(output, options.channels).prediction.to(x.scalar_type());
  };
  const torch::Tensor z1 =
      ddim_step(options.prediction, prediction(z, first), z, t, t1, options.clip);
  const torch::Tensor z2 =
      ddim_step(options.prediction, prediction(z1, first + 1), z1, t1, t2, options.clip);
  return distillation_target(z, z2, t, t2);
}

torch::Tensor distillation_losses(const EpsilonPredictor& student,
                                  const EpsilonPredictor& teacher, const GridTables& grid,
                                  const torch::Tensor& x0, const torch::Tensor& eps,
                                  const torch::Tensor& points,
                                  const DistillationOptions& options) {
  const torch::Tensor first = points * 2;
  const NoiseLevels t = levels_at(grid, first, x0);
  const torch::Tensor z = t.a * x0 + t.s * eps;
  const torch::Tensor target = teacher_target(teacher, grid, z, points, options);
  const torch::Tensor output = student(z, at_points(grid.timesteps, first));
  const torch::Tensor predicted = x0_from_prediction(
      options.prediction, split_output(output, options.channels).prediction.to(x0.scalar_type()),
      z, t);
  const torch::Tensor error = (target - predicted).square().flatten(1).mean(1);
  return (distillation_weight(options.weighting, t) * error).to(torch::kFloat32);
}

}  // namespace ddpm
