// The solver of each SamplerKind; see solver.h.
#include "solver.h"

#include "ddpm/error.h"

namespace ddpm::solvers {

std::unique_ptr<Solver> make_solver(SamplerKind kind) {
  switch (kind) {
    case SamplerKind::ddpm:
      return make_ancestral_solver();
    case SamplerKind::ddim:
      return make_ddim_solver();
    case SamplerKind::euler:
      return make_euler_solver(false);
    case SamplerKind::euler_ancestral:
      return make_euler_solver(true);
    case SamplerKind::heun:
      return make_heun_solver();
    case SamplerKind::dpmpp_2m:
      return make_dpm_solver(false);
    case SamplerKind::dpmpp_2m_sde:
      return make_dpm_solver(true);
  }
  throw Error(ErrorKind::runtime, "unknown SamplerKind " + std::to_string(static_cast<int>(kind)));
}

}  // namespace ddpm::solvers
