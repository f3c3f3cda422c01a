// Timestep spacings and the timestep grid; see timestep_grid.h. Where a spacing comes from
// diffusers, the code repeats numpy's float64 (and, for float32 timesteps, float32) arithmetic,
// so that the timesteps agree exactly, not just to rounding.
#include "diffusion/timestep_grid.h"

#include <algorithm>
#include <cmath>

#include "ddpm/error.h"

namespace ddpm {
namespace {

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

// np.linspace(0, T - 1, steps) in float64: value i is i * ((T-1)/(steps-1)), the last exactly
// T - 1; a single step is {0}.
std::vector<double> linspace_values(int64_t timesteps, int64_t steps) {
  std::vector<double> result(steps, 0.0);
  if (steps == 1) return result;
  const double step = double(timesteps - 1) / double(steps - 1);
  for (int64_t i = 0; i + 1 < steps; ++i) result[i] = double(i) * step;
  result[steps - 1] = double(timesteps - 1);
  return result;
}

bool is_dpm_solver(SamplerKind kind) {
  return kind == SamplerKind::dpmpp_2m || kind == SamplerKind::dpmpp_2m_sde;
}

}  // namespace

std::vector<int64_t> sampling_timesteps(int64_t timesteps, int steps, Spacing spacing) {
  if (spacing == Spacing::karras) {
    throw config_error("sample.spacing", "karras spaces noise levels, not timesteps; it is for "
                                         "the sigma-space samplers (see --list-samplers)");
  }
  if (steps < 1 || steps > timesteps) {
    throw config_error("sample.steps", "must be in [1, T = " + std::to_string(timesteps) +
                                           "], got " + std::to_string(steps));
  }
  std::vector<int64_t> result(steps);
  if (spacing == Spacing::leading) {
    for (int64_t i = 0; i < steps; ++i) result[i] = i * (timesteps / steps);
    return result;
  }
  if (spacing == Spacing::trailing) return trailing_timesteps(timesteps, steps);
  if (spacing == Spacing::linspace) {
    const std::vector<double> values = linspace_values(timesteps, steps);
    for (int64_t i = 0; i < steps; ++i) result[i] = numpy_round(values[i]);
    return result;
  }
  if (steps == 1) return {timesteps - 1};
  const int64_t last = steps - 1;
  for (int64_t i = 0; i < steps; ++i) {
    if (spacing == Spacing::uniform) {
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

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int steps, double rho) {
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> sigmas(steps);
  for (int i = 0; i < steps; ++i) {
    const double ramp = steps == 1 ? 0.0 : i == steps - 1 ? 1.0 : double(i) / double(steps - 1);
    sigmas[i] = std::pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho);
  }
  return sigmas;
}

double timestep_for_sigma(const std::vector<double>& sigmas, double sigma) {
  const int64_t count = static_cast<int64_t>(sigmas.size());
  if (count < 2) return 0.0;
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // The last timestep whose log sigma is <= log_sigma (0 when there is none), at most T-2.
  int64_t low = 0;
  for (int64_t t = 0; t < count; ++t) {
    if (log_sigma - std::log(sigmas[t]) >= 0.0) low = t;
  }
  low = std::min(low, count - 2);
  const double low_log = std::log(sigmas[low]), high_log = std::log(sigmas[low + 1]);
  const double weight = std::clamp((low_log - log_sigma) / (low_log - high_log), 0.0, 1.0);
  return (1.0 - weight) * double(low) + weight * double(low + 1);
}

double sigma_at_timestep(const std::vector<double>& sigmas, double t) {
  const int64_t last = static_cast<int64_t>(sigmas.size()) - 1;
  if (t <= 0.0) return sigmas.front();
  if (t >= double(last)) return sigmas.back();
  const int64_t j = static_cast<int64_t>(std::floor(t));
  const double slope = sigmas[j + 1] - sigmas[j];  // over xp[j+1] - xp[j] = 1
  return slope * (t - double(j)) + sigmas[j];
}

double TimestepGrid::sigma(int point) const {
  const double ab = alpha_bar.at(point);
  return ab >= 1.0 ? 0.0 : std::sqrt((1.0 - ab) / ab);
}

TimestepGrid timestep_grid(const ScheduleTable& table, SamplerKind kind, int steps,
                           Spacing spacing) {
  const int64_t T = static_cast<int64_t>(table.alpha_bar.size());
  check_spacing(kind, steps, spacing, T);
  const SamplerInfo& info = sampler_info(kind);
  TimestepGrid grid;
  const auto finish = [&] {
    grid.alpha_bar.push_back(1.0);
    return grid;
  };
  const auto from_sigmas = [&](const std::vector<double>& levels) {
    for (const double level : levels) grid.alpha_bar.push_back(1.0 / (1.0 + level * level));
  };

  if (spacing == Spacing::karras) {
    const std::vector<double>& sigmas = table.sqrt_recip_alpha_bar_minus_one;  // sigma_t
    const std::vector<double> levels = karras_sigmas(sigmas.front(), sigmas.back(), steps);
    const bool rounded = is_dpm_solver(kind);
    for (const double level : levels) {
      const double t = timestep_for_sigma(sigmas, level);
      grid.timesteps.push_back(rounded ? double(numpy_round(t)) : double(float(t)));
    }
    grid.fractional = !rounded;
    from_sigmas(levels);
    return finish();
  }
  if (spacing == Spacing::linspace && info.sigma_space && !is_dpm_solver(kind)) {
    const std::vector<double>& sigmas = table.sqrt_recip_alpha_bar_minus_one;  // sigma_t
    const std::vector<double> values = linspace_values(T, steps);
    std::vector<double> levels;
    for (auto it = values.rbegin(); it != values.rend(); ++it) {
      const double t = double(float(*it));  // np.linspace(..., dtype=np.float32)
      grid.timesteps.push_back(t);
      levels.push_back(sigma_at_timestep(sigmas, t));
    }
    grid.fractional = std::any_of(grid.timesteps.begin(), grid.timesteps.end(),
                                  [](double t) { return t != std::floor(t); });
    from_sigmas(levels);
    return finish();
  }
  std::vector<int64_t> ascending;
  if (is_dpm_solver(kind) && (spacing == Spacing::linspace || spacing == Spacing::leading)) {
    ascending = sampling_timesteps(T, steps + 1, spacing);
    ascending.erase(ascending.begin());
  } else {
    ascending = sampling_timesteps(T, steps, spacing);
  }
  for (auto it = ascending.rbegin(); it != ascending.rend(); ++it) {
    grid.timesteps.push_back(double(*it));
    grid.alpha_bar.push_back(table.alpha_bar[*it]);
  }
  return finish();
}

}  // namespace ddpm
