// DDIM (Song et al. 2020, eq. 12): deterministic for eta = 0 (then the same update as euler on
// the sigma ODE), eta = 1 adds DDPM-like noise.
#include <algorithm>
#include <cmath>

#include "solver.h"

namespace ddpm::solvers {
namespace {

class DdimSolver final : public Solver {
 public:
  StepResult step(int step, const torch::Tensor& x, const StepContext& context) override {
    const double ab = context.grid.alpha_bar[step], ab_prev = context.grid.alpha_bar[step + 1];
    torch::Tensor eps = context.eps(x, step);
    const torch::Tensor x0 = predict_x0(x, eps, ab, context.options.clip_denoised);
    if (context.options.clip_denoised) {
      // As guided-diffusion's ddim_sample does (diffusers' DDIMScheduler with
      // use_clipped_model_output=True): the direction term uses the eps consistent with the
      // clipped x0.
      eps = (x - x0 * std::sqrt(ab)) * (1.0 / std::sqrt(1.0 - ab));
    }
    const double sigma = context.options.eta *
                         std::sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev));
    const double direction = std::sqrt(std::max(0.0, 1.0 - ab_prev - sigma * sigma));
    torch::Tensor next = x0 * std::sqrt(ab_prev) + eps * direction;
    // sigma is 0 at the last step (alpha_bar_prev = 1), and everywhere when eta = 0.
    if (context.options.eta > 0.0 && step + 1 < context.grid.steps()) {
      next = next + context.noise(step) * sigma;
    }
    return {next, x0};
  }
};

}  // namespace

std::unique_ptr<Solver> make_ddim_solver() { return std::make_unique<DdimSolver>(); }

}  // namespace ddpm::solvers
