// Importance-sampled timesteps; see timestep_resampler.h.
#include "train/timestep_resampler.h"

#include <algorithm>
#include <cmath>

#include "base/seed_mix.h"
#include "ddpm/error.h"

namespace ddpm {

TimestepResampler::TimestepResampler(int64_t timesteps)
    : history_(static_cast<size_t>(timesteps) * kHistory, 0.0),
      counts_(static_cast<size_t>(timesteps), 0) {}

bool TimestepResampler::warmed_up() const {
  return std::all_of(counts_.begin(), counts_.end(),
                     [](int64_t count) { return count == kHistory; });
}

std::vector<double> TimestepResampler::probabilities() const {
  const size_t T = counts_.size();
  std::vector<double> p(T, 1.0 / double(T));
  if (!warmed_up()) return p;
  double total = 0.0;
  for (size_t t = 0; t < T; ++t) {
    double second_moment = 0.0;
    for (int k = 0; k < kHistory; ++k) {
      const double loss = history_[t * kHistory + k];
      second_moment += loss * loss;
    }
    p[t] = std::sqrt(second_moment / kHistory);
    total += p[t];
  }
  for (double& value : p) {
    value = (total > 0.0 ? value / total : 1.0 / double(T)) * (1.0 - kUniformShare) +
            kUniformShare / double(T);
  }
  return p;
}

void TimestepResampler::update(const std::vector<int64_t>& t, const std::vector<double>& losses) {
  for (size_t i = 0; i < t.size() && i < losses.size(); ++i) {
    if (!std::isfinite(losses[i]) || t[i] < 0 || t[i] >= timesteps()) continue;
    double* row = &history_[static_cast<size_t>(t[i]) * kHistory];
    int64_t& count = counts_[static_cast<size_t>(t[i])];
    if (count == kHistory) {
      std::copy(row + 1, row + kHistory, row);
      row[kHistory - 1] = losses[i];
    } else {
      row[count++] = losses[i];
    }
  }
}

TimestepResampler::Draws TimestepResampler::draw(const std::vector<double>& uniforms) const {
  const std::vector<double> p = probabilities();
  std::vector<double> cumulative(p.size());
  double sum = 0.0;
  for (size_t t = 0; t < p.size(); ++t) cumulative[t] = sum += p[t];
  Draws draws;
  for (const double u : uniforms) {
    const double target = u * sum;  // sum is 1 up to rounding
    const auto found = std::upper_bound(cumulative.begin(), cumulative.end(), target);
    const size_t t = std::min<size_t>(found - cumulative.begin(), p.size() - 1);
    draws.t.push_back(static_cast<int64_t>(t));
    draws.weight.push_back(1.0 / (double(p.size()) * p[t]));
  }
  return draws;
}

TensorMap TimestepResampler::state() const {
  const int64_t T = timesteps();
  return {{"history", torch::tensor(history_, torch::kFloat64).view({T, kHistory})},
          {"counts", torch::tensor(counts_, torch::kLong)}};
}

void TimestepResampler::restore(const TensorMap& state, const std::string& what) {
  const auto history = state.find("history");
  const auto counts = state.find("counts");
  const int64_t T = timesteps();
  const bool fits = history != state.end() && counts != state.end() &&
                    history->second.sizes() == at::IntArrayRef({T, kHistory}) &&
                    history->second.scalar_type() == torch::kFloat64 &&
                    counts->second.sizes() == at::IntArrayRef({T}) &&
                    counts->second.scalar_type() == torch::kLong;
  if (!fits) {
    throw Error(ErrorKind::runtime,
                what + " has no loss history of " + std::to_string(T) +
                    " timesteps for train.timestep_sampling loss_aware (saved with another "
                    "diffusion.timesteps, or by a run that sampled uniformly?)");
  }
  const torch::Tensor h = history->second.contiguous().cpu();
  const torch::Tensor c = counts->second.contiguous().cpu();
  std::vector<int64_t> new_counts(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + T);
  for (const int64_t count : new_counts) {
    if (count < 0 || count > kHistory) {
      throw Error(ErrorKind::runtime, what + " holds a loss-history count of " +
                                          std::to_string(count) + ", outside 0 .. " +
                                          std::to_string(kHistory));
    }
  }
  history_.assign(h.data_ptr<double>(), h.data_ptr<double>() + T * kHistory);
  counts_ = std::move(new_counts);
}

std::vector<double> timestep_uniforms(const NoiseKey& key, int64_t count) {
  const uint64_t base =
      splitmix64(splitmix64(key.seed ^ 0x74696d6573ULL) ^ static_cast<uint64_t>(key.step));
  std::vector<double> uniforms(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t h = splitmix64(base ^ static_cast<uint64_t>(key.first_example + i));
    uniforms[static_cast<size_t>(i)] = double(h >> 11) * 0x1.0p-53;
  }
  return uniforms;
}

}  // namespace ddpm
