// The closed choices of the config that code outside config/ switches on, as enums with their
// names: parsed once, at the JSON boundary, from the same tables that --help and error messages
// list. (sampler_kind.h holds the samplers' table; precision.h the number formats.)
#pragma once

#include <string>
#include <vector>

namespace ddpm {

// What the network predicts (diffusion.prediction; the conversions are prediction.h).
enum class Prediction { eps, x0, v };

const std::vector<std::string>& prediction_names();  // "eps", "x0", "v"
// Throws ddpm::Error (config, naming diffusion.prediction) for an unknown name.
Prediction prediction_from_name(const std::string& name);
std::string prediction_name(Prediction prediction);

}  // namespace ddpm
