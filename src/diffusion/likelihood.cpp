// The variational bound in bits per dimension; see likelihood.h.
#include "diffusion/likelihood.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "ddpm/error.h"
#include "diffusion/sampler.h"

namespace ddpm {
namespace {

constexpr double kLn2 = std::numbers::ln2;

// values[t] for each example's t, shaped [B, 1, ...] like `like`, in its dtype and on its device.
torch::Tensor at_timesteps(const std::vector<double>& values, const torch::Tensor& t,
                           const torch::Tensor& like) {
  const torch::Tensor table =
      torch::tensor(values, torch::kFloat64).to(like.device(), like.scalar_type());
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return table.index_select(0, t.to(like.device(), torch::kLong)).view(shape);
}

// log beta_t for fixed_large and the top of learned_range; fixed_large takes log beta~_1 at
// t = 0 (posterior_log_variance_clipped[0]), learned_range log beta_0.
std::vector<double> log_betas(const ScheduleTable& table, bool large_at_zero) {
  std::vector<double> values(table.beta.size());
  for (size_t t = 0; t < values.size(); ++t) values[t] = std::log(table.beta[t]);
  if (large_at_zero) values[0] = table.posterior_log_variance_clipped[0];
  return values;
}

// The mean over every dimension but the first, in bits.
torch::Tensor mean_bits(const torch::Tensor& nats) { return nats.flatten(1).mean(1) / kLn2; }

}  // namespace

torch::Tensor normal_kl(const torch::Tensor& mean1, const torch::Tensor& logvar1,
                        const torch::Tensor& mean2, const torch::Tensor& logvar2) {
  return 0.5 * (-1.0 + logvar2 - logvar1 + torch::exp(logvar1 - logvar2) +
                (mean1 - mean2).square() * torch::exp(-logvar2));
}

torch::Tensor discretized_gaussian_log_likelihood(const torch::Tensor& x, const torch::Tensor& mean,
                                                  const torch::Tensor& log_scale) {
  const torch::Tensor centred = x - mean;
  const torch::Tensor inv_scale = torch::exp(-log_scale);
  const torch::Tensor upper = inv_scale * (centred + 1.0 / 255.0);
  const torch::Tensor lower = inv_scale * (centred - 1.0 / 255.0);
  const torch::Tensor log_cdf_upper = torch::special_log_ndtr(upper);
  const torch::Tensor log_survival_lower = torch::special_log_ndtr(-lower);
  // A middle bin: log(Phi(upper) - Phi(lower)), from the side where both tails are small, so
  // that a bin far out in either tail keeps its precision.
  const torch::Tensor right = lower > 0;
  const torch::Tensor hi = torch::where(right, -lower, upper);
  const torch::Tensor lo = torch::where(right, -upper, lower);
  const torch::Tensor log_hi = torch::special_log_ndtr(hi);
  const torch::Tensor log_lo = torch::special_log_ndtr(lo);
  const torch::Tensor log_bin = log_hi + torch::log(-torch::expm1(log_lo - log_hi)).clamp_min(
                                             std::log(1e-300));
  return torch::where(x < -0.999, log_cdf_upper,
                      torch::where(x > 0.999, log_survival_lower, log_bin));
}

BoundOptions bound_options(const Config& config) {
  return {config.diffusion.prediction, config.sample.variance, config.sample.clip_denoised};
}

ReverseGaussian reverse_gaussian(const NoiseSchedule& schedule, const ModelOutput& output,
                                 const torch::Tensor& x_t, const torch::Tensor& t,
                                 const BoundOptions& options) {
  const ScheduleTable& table = schedule.table();
  const torch::Tensor prediction = output.prediction.to(x_t.scalar_type());
  const torch::Tensor a = at_timesteps(table.sqrt_alpha_bar, t, x_t);
  const torch::Tensor s = at_timesteps(table.sqrt_one_minus_alpha_bar, t, x_t);
  ReverseGaussian p;
  switch (options.prediction) {
    case Prediction::eps:
      p.x0 = (x_t - s * prediction) / a;
      break;
    case Prediction::x0:
      p.x0 = prediction;
      break;
    case Prediction::v:
      p.x0 = a * x_t - s * prediction;
      break;
  }
  if (options.clip_denoised) p.x0 = p.x0.clamp(-1.0, 1.0);
  p.mean = at_timesteps(table.posterior_mean_coef_x0, t, x_t) * p.x0 +
           at_timesteps(table.posterior_mean_coef_xt, t, x_t) * x_t;
  const torch::Tensor log_small = at_timesteps(table.posterior_log_variance_clipped, t, x_t);
  switch (options.variance) {
    case Variance::fixed_large:
      p.log_variance = at_timesteps(log_betas(table, true), t, x_t).expand_as(x_t);
      break;
    case Variance::fixed_small:
      p.log_variance = log_small.expand_as(x_t);
      break;
    case Variance::learned: {
      if (!output.variance.defined()) {
        throw Error(ErrorKind::runtime, "the learned variance needs a network that predicts it "
                                        "(model.learn_variance)");
      }
      const torch::Tensor frac = (output.variance.to(x_t.scalar_type()) + 1.0) * 0.5;
      p.log_variance =
          frac * at_timesteps(log_betas(table, false), t, x_t) + (1.0 - frac) * log_small;
      break;
    }
  }
  return p;
}

torch::Tensor kl_term(const NoiseSchedule& schedule, const torch::Tensor& x0,
                      const torch::Tensor& x_t, const torch::Tensor& t, const ReverseGaussian& p) {
  const ScheduleTable& table = schedule.table();
  const torch::Tensor true_mean = at_timesteps(table.posterior_mean_coef_x0, t, x_t) * x0 +
                                  at_timesteps(table.posterior_mean_coef_xt, t, x_t) * x_t;
  const torch::Tensor true_log_variance =
      at_timesteps(table.posterior_log_variance_clipped, t, x_t);
  return mean_bits(normal_kl(true_mean, true_log_variance, p.mean, p.log_variance));
}

torch::Tensor decoder_term(const torch::Tensor& x0, const ReverseGaussian& p) {
  return -mean_bits(discretized_gaussian_log_likelihood(x0, p.mean, 0.5 * p.log_variance));
}

torch::Tensor bound_term(const NoiseSchedule& schedule, const torch::Tensor& x0,
                         const torch::Tensor& x_t, const torch::Tensor& t,
                         const ReverseGaussian& p) {
  const torch::Tensor kl = kl_term(schedule, x0, x_t, t, p);
  return torch::where(t.to(kl.device()) == 0, decoder_term(x0, p), kl);
}

torch::Tensor prior_term(const NoiseSchedule& schedule, const torch::Tensor& x0) {
  const ScheduleTable& table = schedule.table();
  const double alpha_bar = table.alpha_bar.back();
  const torch::Tensor mean = x0 * std::sqrt(alpha_bar);
  const torch::Tensor log_variance = torch::full_like(x0, std::log(1.0 - alpha_bar));
  return mean_bits(normal_kl(mean, log_variance, torch::zeros_like(x0), torch::zeros_like(x0)));
}

namespace {

// Image k's generator, and its next standard-normal draw of one image's shape.
struct ImageDraws {
  std::vector<at::Generator> generators;
  std::vector<int64_t> shape;

  torch::Tensor noise() {
    std::vector<torch::Tensor> draws;
    for (auto& generator : generators) {
      draws.push_back(torch::empty(shape, torch::kFloat32).normal_(0.0, 1.0, generator));
    }
    return torch::stack(draws);
  }
  torch::Tensor timesteps(const Stratum& stratum) {
    torch::Tensor t = torch::empty({static_cast<int64_t>(generators.size())}, torch::kLong);
    for (size_t i = 0; i < generators.size(); ++i) {
      t.select(0, static_cast<int64_t>(i)).random_(stratum.first, stratum.end, generators[i]);
    }
    return t;
  }
};

}  // namespace

std::vector<Stratum> estimate_strata(int64_t timesteps, int evaluations) {
  const int64_t strata = evaluations - 1;
  if (evaluations < 2 || evaluations > timesteps) {
    throw Error(ErrorKind::usage,
                "--timesteps must be 0 (every term) or 2 .. T = " + std::to_string(timesteps) +
                    " (the decoder term and at least one KL term), got " +
                    std::to_string(evaluations));
  }
  std::vector<Stratum> result;
  int64_t first = 1;
  for (int64_t j = 1; j <= strata; ++j) {
    const double edge = std::round(std::pow(double(timesteps), double(j) / double(strata)));
    // At least one t in this stratum, and one left for each stratum after it.
    const int64_t end =
        j == strata ? timesteps
                    : std::min(std::max(first + 1, static_cast<int64_t>(edge)),
                               timesteps - (strata - j));
    result.push_back({first, end});
    first = end;
  }
  return result;
}

NllBatch nll_bound(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                   const torch::Tensor& x0_in, const NllOptions& options,
                   const NllProgress& progress) {
  torch::NoGradGuard no_grad;
  const int64_t batch = x0_in.size(0), channels = x0_in.size(1);
  const int64_t T = schedule.timesteps();
  const bool every = options.timesteps == 0;
  const std::vector<Stratum> strata =
      every ? std::vector<Stratum>{} : estimate_strata(T, options.timesteps);
  const torch::Tensor x0 = x0_in.to(torch::kFloat64);
  ImageDraws draws;
  draws.shape = x0_in.sizes().slice(1).vec();
  for (int64_t i = 0; i < batch; ++i) {
    draws.generators.push_back(
        at::detail::createCPUGenerator(image_seed(options.seed, options.first_image + i)));
  }
  const int64_t evaluations = every ? T : options.timesteps;
  NllBatch result;
  result.terms = torch::zeros({batch, evaluations}, torch::kFloat64);
  if (!every) result.timesteps = torch::zeros({batch, evaluations}, torch::kLong);
  for (int64_t n = 0; n < evaluations; ++n) {
    const torch::Tensor t = every    ? torch::full({batch}, T - 1 - n, torch::kLong)
                            : n == 0 ? torch::zeros({batch}, torch::kLong)
                                     : draws.timesteps(strata[n - 1]);
    const torch::Tensor noise = draws.noise().to(x0.device(), torch::kFloat64);
    const torch::Tensor t_device = t.to(x0.device());
    const torch::Tensor x_t =
        at_timesteps(schedule.table().sqrt_alpha_bar, t_device, x0) * x0 +
        at_timesteps(schedule.table().sqrt_one_minus_alpha_bar, t_device, x0) * noise;
    // The network in float32; the bound in float64 from the same float32 x_t.
    const torch::Tensor input = x_t.to(torch::kFloat32);
    const ModelOutput output = split_output(model(input, t_device), channels);
    const ReverseGaussian p = reverse_gaussian(
        schedule, {output.prediction.to(torch::kFloat64),
                   output.variance.defined() ? output.variance.to(torch::kFloat64)
                                             : output.variance},
        input.to(torch::kFloat64), t_device, options.bound);
    // Every image of an evaluation is at t = 0 (the decoder) or every one at some t >= 1.
    const bool decoder = every ? n == T - 1 : n == 0;
    const torch::Tensor term =
        (decoder ? decoder_term(x0, p)
                 : kl_term(schedule, x0, input.to(torch::kFloat64), t_device, p))
            .cpu();
    if (every) {
      result.terms.select(1, T - 1 - n).copy_(term);
    } else {
      result.terms.select(1, n).copy_(term);
      result.timesteps.select(1, n).copy_(t);
    }
    if (progress) progress(n + 1, evaluations);
  }
  result.prior = prior_term(schedule, x0).cpu();
  if (every) {
    result.bits_per_dim = result.prior + result.terms.sum(1);
    return result;
  }
  std::vector<double> widths = {1.0};  // the decoder term, exact
  for (const Stratum& stratum : strata) widths.push_back(double(stratum.end - stratum.first));
  result.bits_per_dim = result.prior + result.terms.matmul(torch::tensor(widths, torch::kFloat64));
  return result;
}

}  // namespace ddpm
