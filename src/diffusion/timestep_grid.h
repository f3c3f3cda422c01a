// The points a reverse chain visits: which model timesteps, at which noise levels. Every sampler
// runs on a TimestepGrid made here from sample.spacing, so a user can reproduce the timesteps of
// a diffusers pipeline exactly (docs/SAMPLING.md, "Samplers").
//
// Noise levels are given as alpha_bar; in the sigma parameterisation of the same schedule
// (Karras et al. 2022) x_t / sqrt(alpha_bar) = x0 + sigma eps with sigma = sqrt((1 - ab) / ab).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/sampler_kind.h"
#include "diffusion/schedule.h"

namespace ddpm {

// The `steps` integer timesteps (0-based indices into the T-step schedule) of an integer spacing,
// strictly increasing; the chain runs them from the last to the first. Requires 1 <= steps <= T.
//   uniform:   S_i = floor(i (T-1) / (steps-1) + 1/2), i = 0 .. steps-1: evenly spaced from 0 to
//              T-1 inclusive, as improved-diffusion's space_timesteps(T, [steps]), but in exact
//              integer arithmetic with halves rounded up (Python's round() takes the even one).
//   quadratic: S_i = floor(0.8 T (i / (steps-1))^2), DDIM's
//              (linspace(0, sqrt(0.8 T), steps) ** 2).astype(int) in exact integer arithmetic,
//              then made strictly increasing by S_i = max(S_i, S_{i-1} + 1) (the early values
//              crowd together); the result stays <= T-1 for any steps <= T, and steps == T gives
//              every timestep.
//   leading:   S_i = i floor(T / steps), diffusers' default ("leading", steps_offset 0): the chain
//              starts at T - T/steps (980 for 50 of 1000 steps), not T-1, and ends at 0;
//              steps == 1 gives {0}, as in diffusers.
//   trailing:  S_i = round((i+1) T / steps) - 1 (diffusers' "trailing"): the chain starts at
//              T-1 and ends at about T/steps - 1.
//   linspace:  S_i = round(i (T-1) / (steps-1)) (diffusers' "linspace"): uniform, but with
//              numpy's rounding (halves to even), and {0} for a single step.
// trailing and linspace repeat numpy's float64 arithmetic, so that they give diffusers'
// timesteps exactly, also where a value is a half (timestep_grid.cpp). steps == T gives every
// timestep 0 .. T-1 for every spacing. A single step (steps == 1) is {T-1} for uniform,
// quadratic and trailing: one step must start from pure noise. karras is not an integer spacing
// (see timestep_grid()) and is refused here.
std::vector<int64_t> sampling_timesteps(int64_t timesteps, int steps, Spacing spacing);

// Karras et al. 2022, eq. 5: sigma_i = (max^(1/rho) + i/(N-1) (min^(1/rho) - max^(1/rho)))^rho,
// i = 0 .. N-1, decreasing from sigma_max to sigma_min (diffusers' _convert_to_karras; N = 1
// gives {sigma_max}).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int steps,
                                  double rho = 7.0);

// The fractional timestep of noise level `sigma` on the schedule whose per-timestep noise levels
// are `sigmas` (increasing; ScheduleTable::sqrt_recip_alpha_bar_minus_one is sigma_t): linear interpolation in log sigma between the neighbouring
// timesteps, clamped to [0, T-1] (diffusers' _sigma_to_t).
double timestep_for_sigma(const std::vector<double>& sigmas, double sigma);

// sigma at a fractional timestep: linear interpolation of sigma between the neighbouring integer
// timesteps (numpy's interp over arange(T), as diffusers' Euler and Heun schedulers do).
double sigma_at_timestep(const std::vector<double>& sigmas, double t);

struct TimestepGrid {
  // The N model timesteps, in the order the chain visits them (decreasing). Integers, except for
  // the sigma-space solvers' linspace and karras spacings (see `fractional`).
  std::vector<double> timesteps;
  // N + 1 noise levels: alpha_bar at each timestep, then 1 (the clean image, sigma = 0).
  std::vector<double> alpha_bar;
  // Some timesteps are not integers: the model is called with float32 timesteps (the UNet's
  // sinusoidal embedding takes any real t), else with int64 ones.
  bool fractional = false;

  int steps() const { return static_cast<int>(timesteps.size()); }
  double sigma(int point) const;  // sqrt((1 - alpha_bar) / alpha_bar); 0 at the last point
};

// The grid of a sampler of `kind` running `steps` steps with `spacing` (sample.spacing;
// throws ddpm::Error naming sample.spacing or sample.steps when they do not fit). Each sampler
// family follows the diffusers scheduler of the same method, so that the same spacing name gives
// the same timesteps:
//   ddpm, ddim (DDPMScheduler, DDIMScheduler): sampling_timesteps(T, steps, spacing), alpha_bar
//     from the schedule. karras is refused: these samplers step between schedule timesteps.
//   euler, euler_ancestral, heun (EulerDiscreteScheduler, HeunDiscreteScheduler): the same, but
//     linspace is not rounded: t_i = float32(i (T-1) / (N-1)), at sigma_at_timestep(t_i).
//   dpmpp_2m, dpmpp_2m_sde (DPMSolverMultistepScheduler): linspace and leading take the
//     (N+1)-point grid of sampling_timesteps and drop its t = 0 point, so the N steps end with a
//     jump from the lowest of them to sigma = 0 (steps <= T - 1 for these two).
//   karras (sigma-space solvers only): sigma_i = karras_sigmas(sigma_0, sigma_{T-1}, N), at
//     t_i = timestep_for_sigma(sigma_i): kept fractional (float32) for euler, euler_ancestral
//     and heun, rounded to the nearest integer for the dpmpp ones, as diffusers does (the model
//     then sees timestep round(t_i) while the solver steps at sigma_i).
// uniform, quadratic and trailing are the same for every sampler.
TimestepGrid timestep_grid(const ScheduleTable& table, SamplerKind kind, int steps,
                           Spacing spacing);

}  // namespace ddpm
