// The shape every sampler has: a Solver advances x from one point of a TimestepGrid to the next,
// calling the model through StepContext. sampler.cpp runs the one reverse loop over it; each
// method lives in its own file of this folder. x is always the variance-preserving x_t (what the
// model takes); the sigma-space solvers convert to x_t / sqrt(alpha_bar) and back inside a step.
#pragma once

#include <functional>
#include <memory>

#include <torch/torch.h>

#include "diffusion/sampler.h"
#include "diffusion/timestep_grid.h"

namespace ddpm::solvers {

struct StepContext {
  const TimestepGrid& grid;
  const SamplerOptions& options;
  // eps_theta(x, timestep of grid point `point`), with the variance output of a
  // model.learn_variance model: one network evaluation.
  std::function<GridOutput(const torch::Tensor& x, int point)> evaluate;
  // The fresh standard-normal z of reverse step `step`, shaped like x. A solver calls it at most
  // once per step, and only at steps that add noise.
  std::function<torch::Tensor(int step)> noise;

  torch::Tensor eps(const torch::Tensor& x, int point) const { return evaluate(x, point).eps; }
};

struct StepResult {
  torch::Tensor x;   // at grid point step + 1
  torch::Tensor x0;  // the prediction of x0 the step used (clipped when clip_denoised)
};

class Solver {
 public:
  virtual ~Solver() = default;
  // From x at grid point `step` to grid point `step + 1` (the last step ends at the clean image).
  virtual StepResult step(int step, const torch::Tensor& x, const StepContext& context) = 0;
};

std::unique_ptr<Solver> make_solver(SamplerKind kind);

std::unique_ptr<Solver> make_ancestral_solver();
std::unique_ptr<Solver> make_ddim_solver();
std::unique_ptr<Solver> make_euler_solver(bool ancestral);
std::unique_ptr<Solver> make_heun_solver();
std::unique_ptr<Solver> make_dpm_solver(bool stochastic);

// x0 = (x - sqrt(1 - ab) eps) / sqrt(ab), clipped to [-1, 1] when `clip`.
inline torch::Tensor predict_x0(const torch::Tensor& x, const torch::Tensor& eps,
                                double alpha_bar, bool clip) {
  torch::Tensor x0 = (x - eps * std::sqrt(1.0 - alpha_bar)) * (1.0 / std::sqrt(alpha_bar));
  if (clip) x0.clamp_(-1.0, 1.0);
  return x0;
}

}  // namespace ddpm::solvers
