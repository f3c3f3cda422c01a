// ddpm::version (ddpm.h): the project version CMake compiles in.
#include "ddpm/ddpm.h"

namespace ddpm {

std::string version() { return DDPM_VERSION; }

}  // namespace ddpm
