// Deriving independent seeds from one user seed: splitmix64 (Steele et al. 2014), a bijective
// 64-bit mixer, so seeds of nearby inputs (image k and k+1, epoch e and e+1) are unrelated.
#pragma once

#include <cstdint>

namespace ddpm {

inline uint64_t splitmix64(uint64_t value) {
  value += 0x9E3779B97F4A7C15ULL;
  value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9ULL;
  value = (value ^ (value >> 27)) * 0x94D049BB133111EBULL;
  return value ^ (value >> 31);
}

}  // namespace ddpm
