// The table of samplers; see sampler_kind.h.
#include "config/sampler_kind.h"

#include "base/suggest.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

void require_steps(int steps, int64_t most, const std::string& why) {
  if (steps < 1 || steps > most) {
    throw config_error("sample.steps", "must be in [1, " + std::to_string(most) + "]" + why +
                                           ", got " + std::to_string(steps));
  }
}

// The samplers that work in sigma space (karras spacing suits them).
std::vector<std::string> sigma_space_samplers() {
  std::vector<std::string> names;
  for (const SamplerInfo& info : all_samplers()) {
    if (info.sigma_space) names.push_back(info.name);
  }
  return names;
}

}  // namespace

const std::vector<SamplerInfo>& all_samplers() {
  static const std::vector<SamplerInfo> samplers = {
      {SamplerKind::ddpm, "ddpm", 1, true, false, "N",
       "ancestral sampling (Ho et al. 2020), respaced when N < T; clips x0"},
      {SamplerKind::ddim, "ddim", 1, false, false, "N",
       "DDIM (Song et al. 2020), stochastic when eta > 0; clips x0 and re-derives eps from it"},
      {SamplerKind::euler, "euler", 1, false, true, "N",
       "Euler on the sigma ODE (Karras et al. 2022); clips x0"},
      {SamplerKind::euler_ancestral, "euler_ancestral", 1, true, true, "N",
       "Euler with ancestral noise (k-diffusion); clips x0"},
      {SamplerKind::heun, "heun", 2, false, true, "2N-1",
       "Heun on the sigma ODE (Karras et al. 2022, Algorithm 1); clips x0"},
      {SamplerKind::dpmpp_2m, "dpmpp_2m", 2, false, true, "N",
       "DPM-Solver++(2M) multistep, data prediction (Lu et al. 2022b); clips x0"},
      {SamplerKind::dpmpp_2m_sde, "dpmpp_2m_sde", 2, true, true, "N",
       "DPM-Solver++(2M) SDE variant (diffusers' sde-dpmsolver++); clips x0"},
  };
  return samplers;
}

const SamplerInfo& sampler_info(SamplerKind kind) {
  choice_names(kind);  // checks the table's order once
  return all_samplers().at(static_cast<size_t>(kind));
}

const std::vector<std::string>& choice_names(SamplerKind) {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> in_order;
    for (const SamplerInfo& info : all_samplers()) {
      if (static_cast<size_t>(info.kind) != in_order.size()) {
        throw Error(ErrorKind::runtime, "all_samplers() is not in SamplerKind order");
      }
      in_order.push_back(info.name);
    }
    return in_order;
  }();
  return names;
}

void check_spacing(SamplerKind kind, int steps, Spacing spacing, int64_t timesteps) {
  const SamplerInfo& info = sampler_info(kind);
  if (spacing == Spacing::karras && !info.sigma_space) {
    throw config_error("sample.spacing",
                       "karras spaces noise levels for the sigma-space samplers (" +
                           choice_list(sigma_space_samplers(), "and") + "); " + info.name +
                           " steps between schedule timesteps: use " +
                           choice_list(timestep_spacing_names()));
  }
  const bool dpm_solver = kind == SamplerKind::dpmpp_2m || kind == SamplerKind::dpmpp_2m_sde;
  if (dpm_solver && (spacing == Spacing::linspace || spacing == Spacing::leading)) {
    require_steps(steps, timesteps - 1,
                  " (T - 1 for the dpmpp samplers with " + choice_name(spacing) + " spacing)");
  } else {
    require_steps(steps, timesteps, " (T = " + std::to_string(timesteps) + ")");
  }
}

int sampler_evaluations(SamplerKind kind, int steps) {
  return kind == SamplerKind::heun ? 2 * steps - 1 : steps;
}

}  // namespace ddpm
