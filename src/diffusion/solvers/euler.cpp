// Euler's method on the probability-flow ODE in the sigma parameterisation (Karras et al. 2022,
// eq. 4 with sigma(t) = t, s(t) = 1): with y = x_t / sqrt(alpha_bar) = x0 + sigma eps,
// dy/dsigma = (y - D(y, sigma)) / sigma, D the predicted x0. euler_ancestral (k-diffusion's
// sample_euler_ancestral, diffusers' EulerAncestralDiscreteScheduler) steps down to
// sigma_down and adds noise of size sigma_up, sigma_down^2 + sigma_up^2 = sigma_next^2.
// With clip_denoised D is clipped to [-1, 1] (diffusers' Euler schedulers have no such option:
// compare with clip_denoised false).
#include <cmath>

#include "solver.h"

namespace ddpm::solvers {
namespace {

class EulerSolver final : public Solver {
 public:
  explicit EulerSolver(bool ancestral) : ancestral_(ancestral) {}

  StepResult step(int step, const torch::Tensor& x, const StepContext& context) override {
    const TimestepGrid& grid = context.grid;
    const double sigma = grid.sigma(step), sigma_next = grid.sigma(step + 1);
    const torch::Tensor eps = context.eps(x, step);
    const torch::Tensor x0 =
        predict_x0(x, eps, grid.alpha_bar[step], context.options.clip_denoised);
    if (sigma_next == 0.0) return {x0, x0};  // y + (0 - sigma) dy/dsigma = D
    const torch::Tensor y = x * (1.0 / std::sqrt(grid.alpha_bar[step]));
    const torch::Tensor slope = (y - x0) * (1.0 / sigma);
    double target = sigma_next, sigma_up = 0.0;
    if (ancestral_) {
      sigma_up = std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                           (sigma * sigma));
      target = std::sqrt(sigma_next * sigma_next - sigma_up * sigma_up);
    }
    torch::Tensor y_next = y + slope * (target - sigma);
    if (sigma_up > 0.0) y_next = y_next + context.noise(step) * sigma_up;
    return {y_next * std::sqrt(grid.alpha_bar[step + 1]), x0};
  }

 private:
  bool ancestral_;
};

}  // namespace

std::unique_ptr<Solver> make_euler_solver(bool ancestral) {
  return std::make_unique<EulerSolver>(ancestral);
}

}  // namespace ddpm::solvers
