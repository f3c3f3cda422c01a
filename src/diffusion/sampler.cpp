// The one reverse loop over the solvers of src/diffusion/solvers/, the sampler options, and per-image
// seeding; see sampler.h. Every step uses scalar coefficients computed in float64 from the
// TimestepGrid: all images of a batch share the timestep, so a step is a handful of
// tensor-scalar operations with no gather and no host-device sync.
#include "diffusion/sampler.h"

#include <algorithm>
#include <cmath>

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

torch::Tensor run_sampler(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                          const SamplerOptions& options, torch::Tensor x_T,
                          const std::function<torch::Tensor(int step)>& noise_for_step,
                          const SamplerCallback& callback) {
  validate_sampler_options(options, schedule.timesteps());
  if (!x_T.defined() || x_T.dim() < 1 || x_T.size(0) < 1) {
    throw Error(ErrorKind::runtime, "run_sampler: x_T must be a non-empty batch [B, ...]");
  }
  torch::NoGradGuard no_grad;
  const TimestepGrid grid =
      timestep_grid(schedule.table(), options.kind, options.steps, options.spacing);
  const auto eps = [&](const torch::Tensor& x, int point) {
    const double t = grid.timesteps[point];
    const auto timestep =
        grid.fractional
            ? torch::full({x.size(0)}, t, x.options().dtype(torch::kFloat32))
            : torch::full({x.size(0)}, static_cast<int64_t>(t), x.options().dtype(torch::kLong));
    const torch::Tensor output = model(x, timestep).to(x.scalar_type());
    return eps_from_prediction(options.prediction, output, x, grid.alpha_bar[point]);
  };
  const solvers::StepContext context{grid, options, eps, noise_for_step};
  const std::unique_ptr<solvers::Solver> solver = solvers::make_solver(options.kind);
  const int total = grid.steps();
  torch::Tensor x = std::move(x_T);
  for (int step = 0; step < total; ++step) {
    solvers::StepResult result = solver->step(step, x, context);
    x = std::move(result.x);
    if (callback) callback(step, total, x, result.x0);
  }
  return x;
}

uint64_t image_seed(uint64_t seed, int64_t index) {
  return splitmix64(splitmix64(seed) + static_cast<uint64_t>(index));
}

torch::Tensor sample_images(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const SamplerOptions& options, int64_t first_index, int64_t count,
                            std::vector<int64_t> image_shape, uint64_t seed, torch::Device device,
                            const SamplerCallback& callback, const torch::Tensor& x_T) {
  if (image_shape.size() != 3 || image_shape[0] < 1 || image_shape[1] < 1 || image_shape[2] < 1) {
    throw Error(ErrorKind::runtime, "sample_images: image_shape must be [C, H, W], all >= 1");
  }
  if (first_index < 0 || count < 1) {
    throw Error(ErrorKind::runtime, "sample_images: needs first_index >= 0 and count >= 1, got " +
                                        std::to_string(first_index) + " and " +
                                        std::to_string(count));
  }
  std::vector<at::Generator> generators;
  generators.reserve(count);
  for (int64_t k = 0; k < count; ++k) {
    generators.push_back(at::detail::createCPUGenerator(image_seed(seed, first_index + k)));
  }
  const auto cpu_float = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
  const auto draw = [&] {
    std::vector<torch::Tensor> images;
    images.reserve(count);
    for (at::Generator& generator : generators) {
      images.push_back(torch::randn(image_shape, generator, cpu_float));
    }
    const torch::Tensor batch = torch::stack(images);
    // From pinned memory the copy runs asynchronously instead of waiting for the GPU's queue.
    return device.is_cuda() ? batch.pin_memory().to(device, /*non_blocking=*/true)
                            : batch.to(device);
  };
  torch::Tensor start = draw();  // drawn even when given: the steps' z come after it
  if (x_T.defined()) {
    std::vector<int64_t> expected = {count};
    expected.insert(expected.end(), image_shape.begin(), image_shape.end());
    if (x_T.sizes() != c10::IntArrayRef(expected)) {
      throw Error(ErrorKind::runtime, "sample_images: the given x_T must have shape " +
                                          c10::str(c10::IntArrayRef(expected)) + ", got " +
                                          c10::str(x_T.sizes()));
    }
    start = x_T.to(device, torch::kFloat32);
  }
  return run_sampler(model, schedule, options, std::move(start),
                     [&](int) { return draw(); }, callback);
}

}  // namespace ddpm
