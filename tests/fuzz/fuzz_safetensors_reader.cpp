// libFuzzer target: any bytes as a whole safetensors file, through read_safetensors() itself
// (header checks, then the tensors read into LibTorch and converted to float32), from an
// in-memory file. A ddpm::Error is the expected answer to a bad file; anything else (another
// exception, a crash, an AddressSanitizer report, a large allocation) is a bug. Built against
// the virtual environment's LibTorch and run by scripts/fuzz_safetensors.sh.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "ddpm/error.h"
#include "ddpm/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int file = ::memfd_create("safetensors", 0);
  if (file < 0 || ::ftruncate(file, 0) != 0 ||
      ::pwrite(file, data, size, 0) != static_cast<ssize_t>(size)) {
    __builtin_trap();  // the harness itself failed
  }
  try {
    ddpm::read_safetensors("/proc/self/fd/" + std::to_string(file));
  } catch (const ddpm::Error&) {
  }
  return 0;
}
