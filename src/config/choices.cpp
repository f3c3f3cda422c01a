// The closed choices' name tables; see choices.h.
#include "config/choices.h"

#include "base/suggest.h"

namespace ddpm {

const std::vector<std::string>& prediction_names() {
  static const std::vector<std::string> names = {"eps", "x0", "v"};
  return names;
}

Prediction prediction_from_name(const std::string& name) {
  require_choice(name, "diffusion.prediction", prediction_names());
  if (name == "x0") return Prediction::x0;
  if (name == "v") return Prediction::v;
  return Prediction::eps;
}

std::string prediction_name(Prediction prediction) {
  return prediction_names()[static_cast<size_t>(prediction)];
}

}  // namespace ddpm
