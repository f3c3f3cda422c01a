// The one reverse loop over the solvers of src/diffusion/solvers/, the sampler options, and per-image
// seeding; see sampler.h. Every step uses scalar coefficients computed in float64 from the
// TimestepGrid: all images of a batch share the timestep, so a step is a handful of
// tensor-scalar operations with no gather and no host-device sync.
#include "diffusion/sampler.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "base/seed_mix.h"
#include "ddpm/error.h"
#include "diffusion/solvers/solver.h"

namespace ddpm {
SamplerOptions sampler_options(const SampleConfig& sample, const DiffusionConfig& diffusion) {
  SamplerOptions options;
  options.prediction = diffusion.prediction;
  options.kind = sample.sampler;
  options.steps = sample.steps;
  options.eta = sample.eta;
  options.variance = sample.variance;
  options.spacing = sample.spacing;
  options.clip_denoised = sample.clip_denoised;
  return options;
}

void validate_sampler_options(const SamplerOptions& options, int64_t timesteps) {
  const SamplerInfo& info = sampler_info(options.kind);
  if (!(options.eta >= 0.0)) {
    throw config_error("sample.eta", "must be >= 0, got " + std::to_string(options.eta));
  }
  if (options.eta != 0.0 && options.kind != SamplerKind::ddim) {
    throw config_error("sample.eta", "is DDIM's noise level; " + info.name +
                                         " has none: set it to 0 or use --sampler ddim");
  }
  check_spacing(options.kind, options.steps, options.spacing, timesteps);
}

GridOutput grid_output(const EpsilonPredictor& model, const TimestepGrid& grid,
                       Prediction prediction, const torch::Tensor& x, int point) {
  const double t = grid.timesteps[point];
  const auto timestep =
      grid.fractional
          ? torch::full({x.size(0)}, t, x.options().dtype(torch::kFloat32))
          : torch::full({x.size(0)}, static_cast<int64_t>(t), x.options().dtype(torch::kLong));
  const ModelOutput output = split_output(model(x, timestep).to(x.scalar_type()), x.size(1));
  return {eps_from_prediction(prediction, output.prediction, x, grid.alpha_bar[point]),
          output.variance};
}

torch::Tensor grid_eps(const EpsilonPredictor& model, const TimestepGrid& grid,
                       Prediction prediction, const torch::Tensor& x, int point) {
  return grid_output(model, grid, prediction, x, point).eps;
}

namespace {

// The reverse loop from grid point `first` to the end.
torch::Tensor run_chain(const EpsilonPredictor& model, const TimestepGrid& grid,
                        const SamplerOptions& options, int first, torch::Tensor x,
                        const std::function<torch::Tensor(int step)>& noise_for_step,
                        const SamplerCallback& callback) {
  torch::NoGradGuard no_grad;
  const auto evaluate = [&](const torch::Tensor& input, int point) {
    return grid_output(model, grid, options.prediction, input, point);
  };
  const solvers::StepContext context{grid, options, evaluate, noise_for_step};
  const std::unique_ptr<solvers::Solver> solver = solvers::make_solver(options.kind);
  const int total = grid.steps() - first;
  for (int step = first; step < grid.steps(); ++step) {
    solvers::StepResult result = solver->step(step, x, context);
    x = std::move(result.x);
    if (callback) callback(step - first, total, x, result.x0);
  }
  return x;
}

// The grid of `options`, after checking them and that `x` is a non-empty batch.
TimestepGrid checked_grid(const NoiseSchedule& schedule, const SamplerOptions& options,
                          const torch::Tensor& x, const char* what) {
  validate_sampler_options(options, schedule.timesteps());
  if (!x.defined() || x.dim() < 1 || x.size(0) < 1) {
    throw Error(ErrorKind::runtime, std::string("run_sampler: ") + what +
                                        " must be a non-empty batch [B, ...]");
  }
  return timestep_grid(schedule.table(), options.kind, options.steps, options.spacing);
}

}  // namespace

torch::Tensor run_sampler(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const SamplerOptions& options, torch::Tensor x_T,
                          const std::function<torch::Tensor(int step)>& noise_for_step,
                          const SamplerCallback& callback) {
  const TimestepGrid grid = checked_grid(schedule, options, x_T, "x_T");
  return run_chain(model, grid, options, 0, std::move(x_T), noise_for_step, callback);
}

torch::Tensor run_sampler_from(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                               const SamplerOptions& options, int first_step,
                               const torch::Tensor& x0, const torch::Tensor& noise,
                               const std::function<torch::Tensor(int step)>& noise_for_step,
                               const SamplerCallback& callback) {
  const TimestepGrid grid = checked_grid(schedule, options, x0, "x0");
  if (first_step < 0 || first_step >= grid.steps()) {
    throw Error(ErrorKind::runtime, "run_sampler_from: first_step " + std::to_string(first_step) +
                                        " is outside the grid's " +
                                        std::to_string(grid.steps()) + " steps");
  }
  const double ab = grid.alpha_bar[first_step];
  torch::Tensor x = x0.to(noise.scalar_type()) * std::sqrt(ab) + noise * std::sqrt(1.0 - ab);
  return run_chain(model, grid, options, first_step, std::move(x), noise_for_step, callback);
}

int first_step_for_strength(int steps, double strength) {
  std::ostringstream shown;
  shown << strength;
  if (!(strength > 0.0 && strength <= 1.0)) {
    throw Error(ErrorKind::usage, "--strength must be in (0, 1] (the fraction of the chain run "
                                  "from the noised input), got " + shown.str());
  }
  const int run = static_cast<int>(std::floor(strength * steps));
  if (run < 1) {
    throw Error(ErrorKind::usage,
                "--strength " + shown.str() + " of " + std::to_string(steps) +
                    " steps runs no step (the last floor(strength x steps) run); raise "
                    "--strength or --steps");
  }
  return steps - run;
}

uint64_t image_seed(uint64_t seed, int64_t index) {
  return splitmix64(splitmix64(seed) + static_cast<uint64_t>(index));
}

}  // namespace ddpm
