// RePaint's timesteps and chain; see repaint.h.
#include "diffusion/repaint.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "ddpm/error.h"
#include "diffusion/solvers/solver.h"

namespace ddpm {
namespace {

void require_positive(int value, const char* key) {
  if (value < 1) {
    throw config_error(key, "must be >= 1, got " + std::to_string(value));
  }
}

}  // namespace

void require_repaint_sampler(SamplerKind kind) {
  if (kind != SamplerKind::ddpm && kind != SamplerKind::ddim) {
    throw config_error("sample.sampler",
                       "inpainting (--mask) runs RePaint, whose steps are ddpm's or ddim's; " +
                           choice_name(kind) + " cannot take them: use --sampler ddpm or ddim");
  }
}

std::vector<int64_t> repaint_timesteps(int64_t timesteps, int steps, int jump_length,
                                       int jump_n_sample) {
  require_positive(steps, "sample.steps");
  require_positive(jump_length, "sample.jump_length");
  require_positive(jump_n_sample, "sample.jump_n_sample");
  const int64_t count = std::min<int64_t>(timesteps, steps);
  std::map<int64_t, int> jumps;  // index -> jumps back up still to make there
  for (int64_t j = 0; j < count - jump_length; j += jump_length) jumps[j] = jump_n_sample - 1;
  std::vector<int64_t> list;
  int64_t t = count;
  while (t >= 1) {
    t -= 1;
    list.push_back(t);
    const auto jump = jumps.find(t);
    if (jump != jumps.end() && jump->second > 0) {
      --jump->second;
      for (int k = 0; k < jump_length; ++k) list.push_back(++t);
    }
  }
  const int64_t gap = timesteps / count;
  for (int64_t& value : list) value *= gap;
  return list;
}

int repaint_evaluations(int64_t timesteps, int steps, int jump_length, int jump_n_sample) {
  const std::vector<int64_t> list = repaint_timesteps(timesteps, steps, jump_length, jump_n_sample);
  int evaluations = 0;
  int64_t last = list.front() + 1;
  for (const int64_t t : list) {
    if (t < last) ++evaluations;
    last = t;
  }
  return evaluations;
}

torch::Tensor run_repaint(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const SamplerOptions& options, const RepaintOptions& repaint,
                          torch::Tensor x_T, const torch::Tensor& known, const torch::Tensor& mask,
                          const std::function<torch::Tensor(int draw)>& noise_for_step,
                          const SamplerCallback& callback) {
  require_repaint_sampler(options.kind);
  validate_sampler_options({options.kind, 1, options.eta, options.variance, Spacing::uniform,
                            options.clip_denoised, options.prediction},
                           schedule.timesteps());
  const int64_t T = schedule.timesteps();
  const std::vector<int64_t> list =
      repaint_timesteps(T, options.steps, repaint.jump_length, repaint.jump_n_sample);
  const int64_t gap = T / std::min<int64_t>(T, options.steps);
  const std::vector<double>& alpha_bar = schedule.table().alpha_bar;
  const auto level = [&](int64_t t) { return t < 0 ? 1.0 : alpha_bar[t]; };
  const int total = repaint_evaluations(T, options.steps, repaint.jump_length,
                                        repaint.jump_n_sample);
  const std::unique_ptr<solvers::Solver> solver = solvers::make_solver(options.kind);
  torch::NoGradGuard no_grad;
  int draws = 0;
  const auto draw = [&](int) { return noise_for_step(draws++); };
  const torch::Tensor keep = mask.to(x_T.scalar_type());
  const torch::Tensor known_x = known.to(x_T.scalar_type());
  torch::Tensor x = std::move(x_T);
  int evaluation = 0;
  int64_t last = list.front() + 1;
  for (const int64_t t : list) {
    if (t >= last) {
      // Back up from the level below `last` to `last`: x_last ~ q(x_last | x_below).
      const double ratio = level(last) / level(last - gap);
      x = x * std::sqrt(ratio) + draw(0) * std::sqrt(1.0 - ratio);
      last = t;
      continue;
    }
    const int64_t below = t - gap;
    // A two-step grid, so that a step that is not the chain's last adds its noise.
    TimestepGrid grid;
    grid.timesteps = {double(t)};
    grid.alpha_bar = {level(t)};
    if (below >= 0) {
      grid.timesteps.push_back(double(below));
      grid.alpha_bar.push_back(level(below));
    }
    grid.alpha_bar.push_back(1.0);
    const auto evaluate = [&](const torch::Tensor& input, int point) {
      return grid_output(model, grid, options.prediction, input, point);
    };
    const solvers::StepResult unknown = solver->step(0, x, {grid, options, evaluate, draw});
    const double ab = level(below);
    const torch::Tensor known_part =
        below >= 0 ? known_x * std::sqrt(ab) + draw(0) * std::sqrt(1.0 - ab) : known_x;
    x = keep * known_part + (1.0 - keep) * unknown.x;
    if (callback) callback(evaluation, total, x, unknown.x0);
    ++evaluation;
    last = t;
  }
  return x;
}

}  // namespace ddpm
