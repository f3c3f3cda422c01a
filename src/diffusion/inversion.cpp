// DDIM inversion; see inversion.h.
#include "diffusion/inversion.h"

#include <cmath>
#include <string>

#include "ddpm/error.h"
#include "diffusion/prediction.h"

namespace ddpm {

torch::Tensor invert_images(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const SamplerOptions& options, torch::Tensor x0,
                            const SamplerCallback& callback) {
  if (options.kind != SamplerKind::ddim) {
    throw config_error("sample.sampler", "inversion runs the DDIM chain backwards; got " +
                                             choice_name(options.kind) + ": use ddim");
  }
  if (options.eta != 0.0) {
    throw config_error("sample.eta", "inversion is deterministic DDIM: eta must be 0, got " +
                                         std::to_string(options.eta));
  }
  validate_sampler_options(options, schedule.timesteps());
  if (!x0.defined() || x0.dim() < 1 || x0.size(0) < 1) {
    throw Error(ErrorKind::runtime, "invert_images: x0 must be a non-empty batch [B, ...]");
  }
  torch::NoGradGuard no_grad;
  const TimestepGrid grid =
      timestep_grid(schedule.table(), options.kind, options.steps, options.spacing);
  const int steps = grid.steps();
  torch::Tensor x = std::move(x0);
  for (int k = 0; k < steps; ++k) {
    const int point = steps - 1 - k;  // going up: the grid's last step first
    const double below = grid.alpha_bar[point + 1], above = grid.alpha_bar[point];
    // The model's output converted at the level x is at, as diffusers' DDIMInverseScheduler.
    const auto timestep = torch::full({x.size(0)}, static_cast<int64_t>(grid.timesteps[point]),
                                      x.options().dtype(torch::kLong));
    const torch::Tensor output =
        split_output(model(x, timestep).to(x.scalar_type()), x.size(1)).prediction;
    const torch::Tensor eps = eps_from_prediction(options.prediction, output, x, below);
    const torch::Tensor predicted =
        (x - eps * std::sqrt(1.0 - below)) * (1.0 / std::sqrt(below));
    x = predicted * std::sqrt(above) + eps * std::sqrt(1.0 - above);
    if (callback) callback(k, steps, x, predicted);
  }
  return x;
}

}  // namespace ddpm
