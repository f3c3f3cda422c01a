// Importance-sampled timesteps (train.timestep_sampling loss_aware): improved-diffusion's
// second-moment resampler (Nichol & Dhariwal 2021, section 3.3). It keeps the last 10 losses
// at every t; until every t has 10, t stays uniform. Then t is drawn with
//   p_t proportional to sqrt(E[L_t^2]) over those losses, mixed with 0.001 of the uniform
//   distribution (p_t = 0.999 p'_t + 0.001 / T),
// and each example's loss is weighted by 1 / (T p_t), so that the objective's expectation is the
// uniform one. The history is part of a checkpoint; every rank applies the same losses in the
// same order (the global batch's, by example index), so the ranks agree and a resumed run
// draws as the uninterrupted one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "diffusion/loss.h"
#include "formats/checkpoint.h"

namespace ddpm {

class TimestepResampler {
 public:
  static constexpr int kHistory = 10;
  static constexpr double kUniformShare = 0.001;

  explicit TimestepResampler(int64_t timesteps);

  int64_t timesteps() const { return static_cast<int64_t>(counts_.size()); }
  // Whether every t has kHistory losses (before: uniform draws, weights 1).
  bool warmed_up() const;
  // p_t for t = 0 .. T-1 (uniform before warm-up).
  std::vector<double> probabilities() const;

  // Records loss losses[i] at timestep t[i], in order (a full t drops its oldest). Non-finite
  // losses are left out.
  void update(const std::vector<int64_t>& t, const std::vector<double>& losses);

  // The timestep of each uniform u in [0, 1) under probabilities() (the first t whose
  // cumulative probability exceeds u), and its weight 1 / (T p_t).
  struct Draws {
    std::vector<int64_t> t;
    std::vector<double> weight;
  };
  Draws draw(const std::vector<double>& uniforms) const;

  // The state for a checkpoint: "history" [T, kHistory] float64 (oldest first) and "counts" [T]
  // int64. restore() throws ddpm::Error (runtime) naming `what` for a state of another shape
  // or with impossible counts.
  TensorMap state() const;
  void restore(const TensorMap& state, const std::string& what);

 private:
  std::vector<double> history_;  // T x kHistory
  std::vector<int64_t> counts_;
};

// The uniforms in [0, 1) of a batch's examples: example i is example first_example + i of step
// `step`, hashed with the seed (independent of the noise draws and of batch splits).
std::vector<double> timestep_uniforms(const NoiseKey& key, int64_t count);

}  // namespace ddpm
