// DDPM ancestral, respaced DDPM and DDIM sampling; see sampler.h. Every step uses scalar
// coefficients taken from the float64 ScheduleTable: all images of a batch share the timestep,
// so a step is a handful of tensor-scalar operations with no gather and no host-device sync.
#include "ddpm/sampler.h"

#include <algorithm>
#include <cmath>

#include "ddpm/error.h"
#include "ddpm/seed_mix.h"
#include "ddpm/suggest.h"

namespace ddpm {
namespace {

const std::vector<std::string> kSamplerNames = {"ddpm", "ddim"};
const std::vector<std::string> kVarianceNames = {"fixed_large", "fixed_small"};
const std::vector<std::string> kSpacingNames = {"uniform", "quadratic", "leading", "trailing",
                                                "linspace"};

// numpy's round(): to the nearest integer, halves to the even one (rint in the default
// rounding mode).
int64_t numpy_round(double value) { return static_cast<int64_t>(std::nearbyint(value)); }

// diffusers' "trailing": np.round(np.arange(T, 0, -T / steps)) - 1, increasing. numpy's arange
// fills value k as start + k * ((start + step) - start), and this repeats that float64
// arithmetic, so that the results agree where it is not exact (T = 999, 30 steps: 166.5 comes
// out as 166.50000000000003 and rounds up).
std::vector<int64_t> trailing_timesteps(int64_t timesteps, int64_t steps) {
  const double start = double(timesteps), step = -double(timesteps) / double(steps);
  const double second = start + step, delta = second - start;
  std::vector<int64_t> result(steps);
  for (int64_t k = 0; k < steps; ++k) {
    const double value = k == 0 ? start : k == 1 ? second : start + double(k) * delta;
    result[steps - 1 - k] = numpy_round(value) - 1;
  }
  return result;
}

// diffusers' "linspace": np.linspace(0, T - 1, steps).round(): value i is i * ((T-1)/(steps-1))
// in float64, the last exactly T - 1; a single step is {0}.
std::vector<int64_t> linspace_timesteps(int64_t timesteps, int64_t steps) {
  std::vector<int64_t> result(steps, 0);
  if (steps == 1) return result;
  const double step = double(timesteps - 1) / double(steps - 1);
  for (int64_t i = 0; i + 1 < steps; ++i) result[i] = numpy_round(double(i) * step);
  result[steps - 1] = timesteps - 1;
  return result;
}

torch::Tensor predict_eps(const EpsilonPredictor& model, const torch::Tensor& x, int64_t t) {
  const auto timestep = torch::full({x.size(0)}, t, x.options().dtype(torch::kLong));
  return model(x, timestep).to(x.scalar_type());
}

// Ancestral sampling on `chain` (the original schedule, or a respaced one whose index i stands
// for the original timestep timesteps[i]).
torch::Tensor run_ancestral(const EpsilonPredictor& model, const NoiseSchedule& chain,
                            const std::vector<int64_t>& timesteps, const SamplerOptions& options,
                            torch::Tensor x,
                            const std::function<torch::Tensor(int step)>& noise_for_step,
                            const SamplerCallback& callback) {
  const ScheduleTable& table = chain.table();
  const int total = static_cast<int>(timesteps.size());
  const bool fixed_large = options.variance == "fixed_large";
  for (int step = 0; step < total; ++step) {
    const int i = total - 1 - step;
    const torch::Tensor eps = predict_eps(model, x, timesteps[i]);
    torch::Tensor x0, mean;
    if (options.clip_denoised || callback) {
      x0 = x * table.sqrt_recip_alpha_bar[i] - eps * table.sqrt_recip_alpha_bar_minus_one[i];
    }
    if (options.clip_denoised) {
      // mu~(clip(x0), x_t): the same as the expression below while nothing is clipped.
      x0.clamp_(-1.0, 1.0);
      mean = x0 * table.posterior_mean_coef_x0[i] + x * table.posterior_mean_coef_xt[i];
    } else {
      // Ho et al. 2020, Algorithm 2.
      mean = (x - eps * (table.beta[i] / table.sqrt_one_minus_alpha_bar[i])) *
             table.sqrt_recip_alpha[i];
    }
    if (i > 0) {
      // The original code's fixed_large log-variance is log(append(beta~_1, beta_1:)): at t = 0
      // it would use beta~_1 instead of beta_0, but no noise is added at t = 0, so the two agree.
      const double variance = fixed_large ? table.beta[i] : table.posterior_variance[i];
      x = mean + noise_for_step(step) * std::sqrt(variance);
    } else {
      x = mean;
    }
    if (callback) callback(step, total, x, x0);
  }
  return x;
}

// DDIM (Song et al. 2020, eq. 12) over the original schedule's timesteps.
torch::Tensor run_ddim(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                       const std::vector<int64_t>& timesteps, const SamplerOptions& options,
                       torch::Tensor x,
                       const std::function<torch::Tensor(int step)>& noise_for_step,
                       const SamplerCallback& callback) {
  const ScheduleTable& table = schedule.table();
  const int total = static_cast<int>(timesteps.size());
  for (int step = 0; step < total; ++step) {
    const int i = total - 1 - step;
    const int64_t t = timesteps[i];
    const double alpha_bar = table.alpha_bar[t];
    const double alpha_bar_prev = i > 0 ? table.alpha_bar[timesteps[i - 1]] : 1.0;
    torch::Tensor eps = predict_eps(model, x, t);
    torch::Tensor x0 =
        x * table.sqrt_recip_alpha_bar[t] - eps * table.sqrt_recip_alpha_bar_minus_one[t];
    if (options.clip_denoised) {
      // As guided-diffusion's ddim_sample does (diffusers' DDIMScheduler with
      // use_clipped_model_output=True): the direction term uses the eps consistent with the
      // clipped x0.
      x0.clamp_(-1.0, 1.0);
      eps = (x - x0 * table.sqrt_alpha_bar[t]) * (1.0 / table.sqrt_one_minus_alpha_bar[t]);
    }
    const double sigma =
        options.eta * std::sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) *
                                (1.0 - alpha_bar / alpha_bar_prev));
    const double direction = std::sqrt(std::max(0.0, 1.0 - alpha_bar_prev - sigma * sigma));
    x = x0 * std::sqrt(alpha_bar_prev) + eps * direction;
    // sigma is 0 at the last step (alpha_bar_prev = 1), and everywhere when eta = 0.
    if (options.eta > 0.0 && i > 0) x = x + noise_for_step(step) * sigma;
    if (callback) callback(step, total, x, x0);
  }
  return x;
}

}  // namespace

SamplerKind sampler_from_name(const std::string& name) {
  require_choice(name, "sample.sampler", kSamplerNames);
  return name == "ddim" ? SamplerKind::ddim : SamplerKind::ddpm;
}

std::string sampler_name(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::ddpm:
      return "ddpm";
    case SamplerKind::ddim:
      return "ddim";
  }
  throw Error(ErrorKind::runtime, "unknown SamplerKind " + std::to_string(static_cast<int>(kind)));
}

SamplerOptions sampler_options(const SampleConfig& sample) {
  SamplerOptions options;
  options.kind = sampler_from_name(sample.sampler);
  options.steps = sample.steps;
  options.eta = sample.eta;
  options.variance = sample.variance;
  options.spacing = sample.spacing;
  options.clip_denoised = sample.clip_denoised;
  return options;
}

void validate_sampler_options(const SamplerOptions& options, int64_t timesteps) {
  if (options.steps < 1 || options.steps > timesteps) {
    throw config_error("sample.steps", "must be in [1, T = " + std::to_string(timesteps) +
                                           "], got " + std::to_string(options.steps));
  }
  if (!(options.eta >= 0.0)) {
    throw config_error("sample.eta", "must be >= 0, got " + std::to_string(options.eta));
  }
  require_choice(options.variance, "sample.variance", kVarianceNames);
  require_choice(options.spacing, "sample.spacing", kSpacingNames);
}

std::vector<int64_t> sampling_timesteps(int64_t timesteps, int steps, const std::string& spacing) {
  require_choice(spacing, "sample.spacing", kSpacingNames);
  if (steps < 1 || steps > timesteps) {
    throw config_error("sample.steps", "must be in [1, T = " + std::to_string(timesteps) +
                                           "], got " + std::to_string(steps));
  }
  std::vector<int64_t> result(steps);
  if (spacing == "leading") {
    for (int64_t i = 0; i < steps; ++i) result[i] = i * (timesteps / steps);
    return result;
  }
  if (spacing == "trailing") return trailing_timesteps(timesteps, steps);
  if (spacing == "linspace") return linspace_timesteps(timesteps, steps);
  if (steps == 1) return {timesteps - 1};
  const int64_t last = steps - 1;
  for (int64_t i = 0; i < steps; ++i) {
    if (spacing == "uniform") {
      // floor(i (T-1) / last + 1/2): rounding to nearest, halves up, with integers only.
      result[i] = (2 * i * (timesteps - 1) + last) / (2 * last);
    } else {
      // floor(0.8 T i^2 / last^2) = floor(4 T i^2 / (5 last^2)).
      result[i] = (4 * timesteps * i * i) / (5 * last * last);
      if (i > 0) result[i] = std::max(result[i], result[i - 1] + 1);
    }
  }
  return result;
}

NoiseSchedule respaced_schedule(const NoiseSchedule& schedule,
                                const std::vector<int64_t>& timesteps) {
  const std::vector<double>& alpha_bar = schedule.table().alpha_bar;
  std::vector<double> betas;
  double alpha_bar_prev = 1.0;
  int64_t previous = -1;
  for (const int64_t t : timesteps) {
    if (t <= previous || t >= schedule.timesteps()) {
      throw Error(ErrorKind::runtime,
                  "respaced_schedule: timesteps must be strictly increasing in [0, " +
                      std::to_string(schedule.timesteps()) + "), got " + std::to_string(t) +
                      " after " + std::to_string(previous));
    }
    betas.push_back(1.0 - alpha_bar[t] / alpha_bar_prev);
    alpha_bar_prev = alpha_bar[t];
    previous = t;
  }
  return NoiseSchedule(betas);
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
  const auto timesteps = sampling_timesteps(schedule.timesteps(), options.steps, options.spacing);
  if (options.kind == SamplerKind::ddim) {
    return run_ddim(model, schedule, timesteps, options, std::move(x_T), noise_for_step,
                    callback);
  }
  if (static_cast<int64_t>(timesteps.size()) == schedule.timesteps()) {
    return run_ancestral(model, schedule, timesteps, options, std::move(x_T), noise_for_step,
                         callback);
  }
  return run_ancestral(model, respaced_schedule(schedule, timesteps), timesteps, options,
                       std::move(x_T), noise_for_step, callback);
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
