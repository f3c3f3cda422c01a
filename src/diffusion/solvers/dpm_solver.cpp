// DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2), multistep with data prediction, and its SDE
// variant (diffusers' DPMSolverMultistepScheduler, algorithm_type dpmsolver++ and
// sde-dpmsolver++, solver_order 2, solver_type midpoint). In lambda = log(alpha / sigma), with
// alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar), D the predicted x0 and h the step in
// lambda, a step from s to t is
//   ODE: x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^-h) (D_s + (D_s - D_prev) / (2 r))
//   SDE: x_t = (sigma_t / sigma_s) e^-h x_s + alpha_t (1 - e^-2h) (D_s + (D_s - D_prev) / (2 r))
//              + sigma_t sqrt(1 - e^-2h) z
// with r = h_prev / h; the first step has no D_prev and is first order (the term drops), and the
// last step, to sigma = 0, is first order too (diffusers' lower_order_final, final_sigmas_type
// zero): it returns D. With clip_denoised every D is clipped to [-1, 1] before it enters the
// history (diffusers has no such option: compare with clip_denoised false).
#include <cmath>

#include "solver.h"

namespace ddpm::solvers {
namespace {

class DpmSolver final : public Solver {
 public:
  explicit DpmSolver(bool stochastic) : stochastic_(stochastic) {}

  StepResult step(int step, const torch::Tensor& x, const StepContext& context) override {
    const TimestepGrid& grid = context.grid;
    const double ab_s = grid.alpha_bar[step], ab_t = grid.alpha_bar[step + 1];
    const torch::Tensor x0 =
        predict_x0(x, context.eps(x, step), ab_s, context.options.clip_denoised);
    const double lambda_s = 0.5 * std::log(ab_s / (1.0 - ab_s));
    if (ab_t >= 1.0) return {x0, x0};
    const double alpha_t = std::sqrt(ab_t), sigma_t = std::sqrt(1.0 - ab_t);
    const double sigma_s = std::sqrt(1.0 - ab_s);
    const double lambda_t = 0.5 * std::log(ab_t / (1.0 - ab_t));
    const double h = lambda_t - lambda_s;
    torch::Tensor data = x0;
    if (previous_x0_.defined()) {
      const double r = (lambda_s - previous_lambda_) / h;
      data = x0 + (x0 - previous_x0_) * (0.5 / r);
    }
    previous_x0_ = x0;
    previous_lambda_ = lambda_s;
    if (!stochastic_) {
      return {x * (sigma_t / sigma_s) + data * (-alpha_t * std::expm1(-h)), x0};
    }
    const double decay = -std::expm1(-2.0 * h);  // 1 - e^-2h
    return {x * (sigma_t / sigma_s * std::exp(-h)) + data * (alpha_t * decay) +
                context.noise(step) * (sigma_t * std::sqrt(decay)),
            x0};
  }

 private:
  bool stochastic_;
  torch::Tensor previous_x0_;
  double previous_lambda_ = 0.0;
};

}  // namespace

std::unique_ptr<Solver> make_dpm_solver(bool stochastic) {
  return std::make_unique<DpmSolver>(stochastic);
}

}  // namespace ddpm::solvers
