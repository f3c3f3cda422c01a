// A libFuzzer executable for one target of fuzz_targets.h, chosen at compile time
// (DDPM_FUZZ_TARGET, set by tests/fuzz/CMakeLists.txt). A ddpm::Error is the expected answer
// to a bad input; everything else escapes to libFuzzer as a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ddpm/error.h"
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ddpm::fuzz::FuzzTarget& target = ddpm::fuzz::fuzz_target(DDPM_FUZZ_TARGET);
  try {
    target.run(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const ddpm::Error&) {
  }
  return 0;
}
