// The fuzz targets: each feeds any bytes, as one input, to a parser of outside bytes, which must
// give a result or throw ddpm::Error. Anything else is a bug: another exception (a broken
// property throws std::logic_error), a crash, a sanitizer report, or an allocation of a size
// the input only claims. fuzz_main.cpp makes a libFuzzer executable of each (DDPM_FUZZ, run by
// dev/fuzz.sh); the unit test FuzzRegressions runs each on the files it keeps.
#pragma once

#include <string_view>
#include <vector>

namespace ddpm::fuzz {

struct FuzzTarget {
  const char* name;                        // the executable is fuzz_<name>
  void (*run)(std::string_view input);
  std::vector<const char*> input_folders;  // seeds and crashing inputs, from the source root
  // Well-formed inputs (named valid_*) that this parser refuses by design, with a ddpm::Error:
  // the unit test checks that they are refused and every other valid_* input is read.
  std::vector<std::string_view> refused_valid_inputs = {};
};

const std::vector<FuzzTarget>& fuzz_targets();

// The target called `name`; throws std::invalid_argument for an unknown name.
const FuzzTarget& fuzz_target(std::string_view name);

}  // namespace ddpm::fuzz
