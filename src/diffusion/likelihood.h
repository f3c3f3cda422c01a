// The variational bound of DDPM (Ho et al. 2020, eq. 5) in bits per dimension, as the DDPM paper
// and improved-diffusion compute it: for an image x0 in [-1, 1] on the 256-level grid,
//   L = L_T + sum_{t=2..T} L_{t-1} + L_0
//   L_T     = KL(q(x_T | x0) || N(0, I))                                   (the prior term)
//   L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p_theta(x_{t-1} | x_t)), x_t ~ q(x_t | x0)
//   L_0     = -log p_theta(x0 | x1), a Gaussian discretized into bins of width 2/255 on [-1, 1],
//             the two end bins open (the decoder term)
// each summed over the dimensions and divided by their number and by ln 2. In the project's
// 0-based timesteps (schedule.h), index t = 0 is the decoder and t >= 1 the KL terms.
//
// p_theta(x_{t-1} | x_t) = N(mu, Sigma): mu = mu~(x0_hat, x_t), the posterior mean at the
// predicted x0 (clipped to [-1, 1] when clip_denoised); log Sigma by the variance:
//   fixed_large: log beta_t, and at t = 0 log beta~_1 (the original code's
//                log(append(beta~_1, beta_1:)));
//   fixed_small: log beta~_t, and at t = 0 log beta~_1;
//   learned:     frac log beta_t + (1 - frac) log beta~_t, frac = (v + 1) / 2, with beta~_0 taken
//                as beta~_1 (improved-diffusion's learned_range).
// The bound's arithmetic runs in the dtype of its inputs (float64 for ddpm nll; the training
// objective's L_vlb in float32).
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "config/config.h"
#include "diffusion/loss.h"
#include "diffusion/schedule.h"

namespace ddpm {

// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) elementwise, in nats.
torch::Tensor normal_kl(const torch::Tensor& mean1, const torch::Tensor& logvar1,
                        const torch::Tensor& mean2, const torch::Tensor& logvar2);

// log p(x) elementwise, in nats, of x on the 256-level grid of [-1, 1] under a Gaussian of
// `mean` and log standard deviation `log_scale` discretized into bins [x - 1/255, x + 1/255]
// (open below at -1 and above at 1).
torch::Tensor discretized_gaussian_log_likelihood(const torch::Tensor& x, const torch::Tensor& mean,
                                                  const torch::Tensor& log_scale);

struct BoundOptions {
  Prediction prediction = Prediction::eps;  // what the network predicts
  Variance variance = Variance::fixed_large;
  bool clip_denoised = true;
};
// The model's prediction type, its sample.variance and sample.clip_denoised.
BoundOptions bound_options(const Config& config);

// p_theta(x_{t-1} | x_t) = N(mean, exp(log_variance)) from the network's output at x_t (t: [B]
// int64); computed in x_t's dtype. `output.variance` must be defined for Variance::learned.
struct ReverseGaussian {
  torch::Tensor mean, log_variance, x0;
};
ReverseGaussian reverse_gaussian(const NoiseSchedule& schedule, const ModelOutput& output,
                                 const torch::Tensor& x_t, const torch::Tensor& t,
                                 const BoundOptions& options);

// The bound's term at each example's t, in bits per dimension ([B]): the decoder term where
// t = 0, else the KL term, for the example's x0 and x_t.
torch::Tensor bound_term(const NoiseSchedule& schedule, const torch::Tensor& x0,
                         const torch::Tensor& x_t, const torch::Tensor& t,
                         const ReverseGaussian& p);
// Its two cases: the KL term (every t >= 1) and the decoder term (t = 0: only p is needed).
torch::Tensor kl_term(const NoiseSchedule& schedule, const torch::Tensor& x0,
                      const torch::Tensor& x_t, const torch::Tensor& t, const ReverseGaussian& p);
torch::Tensor decoder_term(const torch::Tensor& x0, const ReverseGaussian& p);

// The prior term L_T of each image, in bits per dimension ([B]).
torch::Tensor prior_term(const NoiseSchedule& schedule, const torch::Tensor& x0);

// The strata of the estimate from K evaluations (2 <= K <= T): K - 1 ranges [first, end) that
// cover t = 1 .. T-1, geometrically spaced (edge j near T^(j / (K-1))), so that the small t,
// whose terms are the largest and change fastest, get strata of their own. Each holds at least
// one t; K = T gives one t each.
struct Stratum {
  int64_t first, end;
};
std::vector<Stratum> estimate_strata(int64_t timesteps, int evaluations);

struct NllOptions {
  BoundOptions bound;
  // 0: every term t = T-1 .. 0 (T network evaluations per image). K (2 .. T): an unbiased
  // estimate from K evaluations per image: prior + L_0 (exact) + sum_j n_j L_{t_j}, t_j drawn
  // uniformly in stratum j of estimate_strata (n_j timesteps wide).
  int timesteps = 0;
  uint64_t seed = 0;          // image k draws from the generator of image_seed(seed, k)
  int64_t first_image = 0;    // the index k of the batch's first image
};

// The bound of a batch of images.
struct NllBatch {
  torch::Tensor bits_per_dim;  // [B] float64: the bound, or its estimate
  torch::Tensor prior;         // [B]: L_T
  torch::Tensor terms;         // [B, T] with every term (column t: L_t, column 0 the decoder);
                               // [B, K] of the estimate's terms (column 0 the decoder)
  torch::Tensor timesteps;     // [B, K] the estimate's t (column 0: 0); undefined with every term
};

// Called after each network evaluation of the batch with (done, total).
using NllProgress = std::function<void(int64_t done, int64_t total)>;

// The bound of x0 ([B, C, H, W] in [-1, 1], on the 256-level grid), in float64; the network
// sees x_t in float32. Image k's x_t at its n-th evaluation is q_sample with the n-th standard
// normal draw ([C, H, W], float32) of image k's generator; the estimate draws each stratum's t
// from it first (random_(first, end)). Runs without autograd. Throws ddpm::Error (usage) for
// timesteps outside 0 and 2 .. T.
NllBatch nll_bound(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                   const torch::Tensor& x0, const NllOptions& options,
                   const NllProgress& progress = {});

}  // namespace ddpm
