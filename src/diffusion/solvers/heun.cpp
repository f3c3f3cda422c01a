// Heun's second-order method on the sigma ODE (Karras et al. 2022, Algorithm 1 without churn;
// diffusers' HeunDiscreteScheduler): an Euler step to sigma_next, then the average of the slopes
// at both ends. The last step, to sigma = 0, is a single Euler step, so N steps cost 2N - 1
// network evaluations. With clip_denoised both predictions of x0 are clipped to [-1, 1] (as
// HeunDiscreteScheduler's clip_sample).
#include <cmath>

#include "solver.h"

namespace ddpm::solvers {
namespace {

class HeunSolver final : public Solver {
 public:
  StepResult step(int step, const torch::Tensor& x, const StepContext& context) override {
    const TimestepGrid& grid = context.grid;
    const bool clip = context.options.clip_denoised;
    const double sigma = grid.sigma(step), sigma_next = grid.sigma(step + 1);
    const torch::Tensor x0 = predict_x0(x, context.eps(x, step), grid.alpha_bar[step], clip);
    if (sigma_next == 0.0) return {x0, x0};
    const torch::Tensor y = x * (1.0 / std::sqrt(grid.alpha_bar[step]));
    const torch::Tensor slope = (y - x0) * (1.0 / sigma);
    const torch::Tensor y_euler = y + slope * (sigma_next - sigma);
    const double scale_next = std::sqrt(grid.alpha_bar[step + 1]);
    const torch::Tensor x_euler = y_euler * scale_next;
    const torch::Tensor x0_next =
        predict_x0(x_euler, context.eps(x_euler, step + 1), grid.alpha_bar[step + 1], clip);
    const torch::Tensor slope_next = (y_euler - x0_next) * (1.0 / sigma_next);
    const torch::Tensor y_next = y + (slope + slope_next) * (0.5 * (sigma_next - sigma));
    return {y_next * scale_next, x0_next};
  }
};

}  // namespace

std::unique_ptr<Solver> make_heun_solver() { return std::make_unique<HeunSolver>(); }

}  // namespace ddpm::solvers
