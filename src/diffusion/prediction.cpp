// Prediction types; see prediction.h.
#include "diffusion/prediction.h"

#include <cmath>

#include "ddpm/error.h"

namespace ddpm {

ModelOutput split_output(const torch::Tensor& output, int64_t channels) {
  if (output.size(1) == channels) return {output, {}};
  if (output.size(1) != 2 * channels) {
    throw Error(ErrorKind::runtime, "the network gives " + std::to_string(output.size(1)) +
                                        " channels for an image of " + std::to_string(channels) +
                                        " (expected " + std::to_string(channels) + ", or " +
                                        std::to_string(2 * channels) + " with its variances)");
  }
  return {output.narrow(1, 0, channels), output.narrow(1, channels, channels)};
}

torch::Tensor prediction_target(Prediction prediction, const torch::Tensor& x0,
                                const torch::Tensor& eps, const torch::Tensor& sqrt_alpha_bar,
                                const torch::Tensor& sqrt_one_minus_alpha_bar) {
  switch (prediction) {
    case Prediction::x0:
      return x0;
    case Prediction::v:
      return sqrt_alpha_bar * eps - sqrt_one_minus_alpha_bar * x0;
    case Prediction::eps:
      break;
  }
  return eps;
}

torch::Tensor eps_from_prediction(Prediction prediction, const torch::Tensor& output,
                                  const torch::Tensor& x_t, double alpha_bar) {
  const double a = std::sqrt(alpha_bar), s = std::sqrt(1.0 - alpha_bar);
  switch (prediction) {
    case Prediction::x0:
      return (x_t - output * a) * (1.0 / s);
    case Prediction::v:
      return x_t * s + output * a;
    case Prediction::eps:
      break;
  }
  return output;
}

torch::Tensor min_snr_weight(Prediction prediction, const torch::Tensor& snr, double gamma) {
  const torch::Tensor clipped = torch::clamp_max(snr, gamma);
  switch (prediction) {
    case Prediction::x0:
      return clipped;
    case Prediction::v:
      return clipped / (snr + 1.0);
    case Prediction::eps:
      break;
  }
  return clipped / snr;
}

}  // namespace ddpm
