// The number formats a forward pass can run in (train.precision, sample.precision), by name,
// without torch: precision.h says what each one is and holds the autocast guard.
#pragma once

#include <string>
#include <vector>

namespace ddpm {

enum class Precision { fp32, bf16, fp16 };

const std::vector<std::string>& precision_names();  // "fp32", "bf16", "fp16", in enum order
// Throws ddpm::Error (config, naming `key`, e.g. "train.precision") for an unknown name.
Precision precision_from_name(const std::string& name, const std::string& key);
const std::string& precision_name(Precision precision);

}  // namespace ddpm
