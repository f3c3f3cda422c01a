// The samplers `ddpm sample` offers (sample.sampler) and what each one is: its order, whether it
// draws fresh noise, whether it runs on the sigma parameterisation (and so takes Karras spacing),
// and how many network evaluations (NFE) N steps cost. `ddpm sample --list-samplers` prints this.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/choices.h"

namespace ddpm {

enum class SamplerKind { ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m, dpmpp_2m_sde };

struct SamplerInfo {
  SamplerKind kind;
  std::string name;
  int order;            // convergence order of the update (the drift's, for the stochastic ones)
  bool stochastic;      // draws fresh noise at every step but the last (ddim: when eta > 0)
  bool sigma_space;     // a solver of the sigma ODE: takes sample.spacing = karras
  std::string nfe;      // network evaluations for N steps, as a formula
  std::string summary;  // one line: the method, its reference, its x0 clipping
};

// Every sampler, in the order --list-samplers prints them.
const std::vector<SamplerInfo>& all_samplers();
const SamplerInfo& sampler_info(SamplerKind kind);
// The samplers' names in enum order: the choice table of sample.sampler (choices.h).
const std::vector<std::string>& choice_names(SamplerKind);

// Throws ddpm::Error (config, naming sample.spacing or sample.steps) unless the spacing suits
// the sampler (karras: sigma-space ones only) and 1 <= steps <= T (T - 1 for the dpmpp samplers
// with linspace or leading spacing, whose grids have steps + 1 points).
void check_spacing(SamplerKind kind, int steps, Spacing spacing, int64_t timesteps);

// The network evaluations a chain of `steps` steps costs: `steps`, and 2 steps - 1 for heun
// (two per step but the last, which goes to sigma = 0 with one Euler step).
int sampler_evaluations(SamplerKind kind, int steps);

}  // namespace ddpm
