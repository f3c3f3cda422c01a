// Test helper for sampler_parity_check.py: runs one of our samplers with the closed-form
// Gaussian oracle that the script also writes in Python, and saves what it needs to replay the
// chain in diffusers.
// Usage: sample_oracle SAMPLER STEPS SPACING CLIP ETA VARIANCE TIMESTEPS OUT.safetensors
// The oracle: pixel p of an image (P = 16 pixels, [1, 4, 4]) has data x0 ~ N(mu_p, s_p^2) with
// mu_p = -0.6 + 1.2 p / (P-1), s_p = 0.2 + 0.5 ((7 p) mod P) / (P-1); its optimal prediction is
// eps(x, t) = sqrt(1 - ab) (x - sqrt(ab) mu) / (ab s^2 + 1 - ab) with ab = 1 / (1 + sigma(t)^2)
// and sigma(t) the log-linear interpolation of the schedule's sigmas (exact at integer t); it is
// computed in float64 and returned as float32. The schedule is linear, 1e-4 .. 0.02.
// VARIANCE learned: the oracle is a learned-variance model, which also returns the variance
// output v_p = -0.9 + 1.8 ((3 p) mod P) / (P-1) (the same at every t).
// OUT holds x_T [4, 1, 4, 4], noise [S, 4, 1, 4, 4] (the z of every step that drew one, when
// S > 0), timesteps [NFE] (every model call's t, in order) and x_0 [4, 1, 4, 4].
#include <cmath>
#include <iostream>
#include <map>

#include "diffusion/sampler.h"
#include "formats/safetensors.h"

namespace {

constexpr int64_t kPixels = 16;

torch::Tensor oracle_eps(const torch::Tensor& x, double t, const std::vector<double>& sigmas) {
  const int64_t last = static_cast<int64_t>(sigmas.size()) - 1;
  const int64_t j = std::min<int64_t>(static_cast<int64_t>(std::floor(t)), last - 1);
  const double w = t - double(j);
  const double sigma = w == 0.0 ? sigmas[j]
                                : std::exp((1.0 - w) * std::log(sigmas[j]) +
                                           w * std::log(sigmas[j + 1]));
  const double ab = 1.0 / (1.0 + sigma * sigma);
  const auto p = torch::arange(kPixels, torch::kFloat64);
  const auto mu = (-0.6 + 1.2 * p / double(kPixels - 1)).view({1, 1, 4, 4});
  const auto s = (0.2 + 0.5 * torch::remainder(7 * p, kPixels) / double(kPixels - 1))
                     .view({1, 1, 4, 4});
  const auto x64 = x.to(torch::kFloat64);
  return ((x64 - std::sqrt(ab) * mu) * std::sqrt(1.0 - ab) / (ab * s * s + (1.0 - ab)))
      .to(torch::kFloat32);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::cerr << "usage: sample_oracle SAMPLER STEPS SPACING CLIP ETA VARIANCE TIMESTEPS OUT\n";
    return 2;
  }
  try {
    ddpm::DiffusionConfig diffusion;
    diffusion.timesteps = std::stoll(argv[7]);
    const ddpm::NoiseSchedule schedule(diffusion);
    const std::vector<double> sigmas = schedule.table().sqrt_recip_alpha_bar_minus_one;
    ddpm::SamplerOptions options;
    options.kind = ddpm::choice_from_name<ddpm::SamplerKind>(argv[1], "sampler");
    options.steps = std::stoi(argv[2]);
    options.spacing = ddpm::choice_from_name<ddpm::Spacing>(argv[3], "spacing");
    options.clip_denoised = std::string(argv[4]) == "1";
    options.eta = std::stod(argv[5]);
    options.variance = ddpm::choice_from_name<ddpm::Variance>(argv[6], "variance");

    std::vector<float> calls;
    const bool learned = options.variance == ddpm::Variance::learned;
    const ddpm::EpsilonPredictor model = [&](const torch::Tensor& x, const torch::Tensor& t) {
      const double value = t[0].to(torch::kFloat64).item<double>();
      calls.push_back(static_cast<float>(value));
      const torch::Tensor eps = oracle_eps(x, value, sigmas);
      if (!learned) return eps;
      const auto p = torch::arange(kPixels, torch::kFloat64);
      const auto v = (-0.9 + 1.8 * torch::remainder(3 * p, kPixels) / double(kPixels - 1))
                         .view({1, 1, 4, 4})
                         .to(torch::kFloat32)
                         .expand_as(eps);
      return torch::cat({eps, v}, 1);
    };
    auto generator = at::detail::createCPUGenerator(20261202);
    const torch::Tensor x_T = torch::randn({4, 1, 4, 4}, generator);
    std::vector<torch::Tensor> noises;
    const torch::Tensor x_0 = ddpm::run_sampler(model, schedule, options, x_T, [&](int) {
      noises.push_back(torch::randn({4, 1, 4, 4}, generator));
      return noises.back();
    });
    std::map<std::string, torch::Tensor> tensors = {
        {"x_T", x_T}, {"x_0", x_0}, {"timesteps", torch::tensor(calls, torch::kFloat32)}};
    if (!noises.empty()) tensors["noise"] = torch::stack(noises);
    ddpm::write_safetensors(argv[8], tensors);
    return 0;
  } catch (const std::exception& error) {
    std::cerr << "sample_oracle: " << error.what() << "\n";
    return 1;
  }
}
