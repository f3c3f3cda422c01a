// libFuzzer target: any bytes as a whole safetensors file, through the header checks of
// safetensors_header.h (the part of the reader that interprets the file; the tensor data is then
// copied by sizes these checks have tied to the file's size). A ddpm::Error is the expected
// answer to a bad file; anything else (another exception, a crash, a sanitizer report, a large
// allocation) is a bug. Built and run by scripts/fuzz_safetensors.sh; the inputs that found
// bugs live in tests/data/safetensors/ and run in the unit tests (SafetensorsFuzzRegressions).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ddpm/error.h"
#include "ddpm/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  try {
    const uint64_t length = ddpm::safetensors_header_length(file, size, "fuzz");
    const ddpm::SafetensorsHeader header =
        ddpm::parse_safetensors_header(file.substr(8, length), size - 8 - length, "fuzz");
    // What the reader relies on: every tensor inside the file, sized by its dtype and shape.
    for (const auto& tensor : header.tensors) {
      if (header.data_start + tensor.end > size) __builtin_trap();
      uint64_t elements = 1;
      for (const int64_t dimension : tensor.shape) elements *= static_cast<uint64_t>(dimension);
      if (elements * ddpm::safetensors_dtype_size(tensor.dtype) != tensor.end - tensor.begin) {
        __builtin_trap();
      }
    }
  } catch (const ddpm::Error&) {
  }
  return 0;
}
