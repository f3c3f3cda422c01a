// DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), and respaced when the grid skips
// timesteps (Nichol & Dhariwal 2021): a step from alpha_bar_t to alpha_bar_s (s < t, the next
// grid point) is a DDPM step of the chain whose own beta is 1 - alpha_bar_t / alpha_bar_s, which
// is the schedule's beta_t when every timestep is visited.
#include <cmath>

#include "solver.h"

namespace ddpm::solvers {
namespace {

class AncestralSolver final : public Solver {
 public:
  StepResult step(int step, const torch::Tensor& x, const StepContext& context) override {
    const double ab = context.grid.alpha_bar[step], ab_next = context.grid.alpha_bar[step + 1];
    const double beta = 1.0 - ab / ab_next;
    const double alpha = 1.0 - beta;
    const GridOutput output = context.evaluate(x, step);
    const torch::Tensor& eps = output.eps;
    torch::Tensor x0, mean;
    if (context.options.clip_denoised) {
      // mu~(clip(x0), x_t): the same as the expression below while nothing is clipped.
      x0 = predict_x0(x, eps, ab, true);
      mean = x0 * (std::sqrt(ab_next) * beta / (1.0 - ab)) +
             x * (std::sqrt(alpha) * (1.0 - ab_next) / (1.0 - ab));
    } else {
      x0 = predict_x0(x, eps, ab, false);
      mean = (x - eps * (beta / std::sqrt(1.0 - ab))) * (1.0 / std::sqrt(alpha));
    }
    if (step + 1 == context.grid.steps()) return {mean, x0};  // no noise into the image
    // fixed_large: beta (the original code's log(append(beta~_1, beta_1:)) differs only at
    // t = 0, where no noise is added); fixed_small: the posterior variance beta~; learned:
    // exp(frac log beta + (1 - frac) log beta~), frac = (v + 1) / 2, of this (respaced) step's
    // beta and beta~ (improved-diffusion, diffusers' learned_range).
    const double small = (1.0 - ab_next) / (1.0 - ab) * beta;
    if (context.options.variance == Variance::learned) {
      TORCH_CHECK(output.variance.defined(),
                  "sample.variance learned needs a model that predicts its variances");
      const torch::Tensor frac = (output.variance + 1.0) * 0.5;
      const torch::Tensor log_variance =
          frac * std::log(beta) + (1.0 - frac) * std::log(small);
      return {mean + context.noise(step) * torch::exp(0.5 * log_variance), x0};
    }
    const double variance = context.options.variance == Variance::fixed_large ? beta : small;
    return {mean + context.noise(step) * std::sqrt(variance), x0};
  }
};

}  // namespace

std::unique_ptr<Solver> make_ancestral_solver() { return std::make_unique<AncestralSolver>(); }

}  // namespace ddpm::solvers
