// GroupNorm (+ swish) for channels-last float32 tensors on the CPU; see group_norm_swish.h.
//
// Memory is [N, HW, C]: every spatial position is a row of C channels, so every loop below runs
// along C, contiguous and independent per channel, and the compiler vectorises it. The kernels
// are compiled twice (AVX2 and the baseline ISA, chosen at load time by the CPU's features) so
// that one binary is fast on current servers and still runs everywhere; CMake compiles this file
// with -fno-trapping-math, without which GCC keeps the clamps in exp_approx() as branches and
// vectorises none of the swish loops.
//
// Forward, per sample n and group g of D channels (M = HW * D values):
//   mean, var over the group; r = 1 / sqrt(var + eps)
//   z = (x - mean) r gamma_c + beta_c;  y = z sigmoid(z) (or y = z)
// Backward, with dz = dy swish'(z) = dy s (1 + z (1 - s)), s = sigmoid(z), and per channel
// a_c = sum_hw dz, b_c = sum_hw dz x:
//   dbeta_c += a_c;  dgamma_c += r (b_c - mean a_c)
//   S1 = sum_{c in g} gamma_c a_c,  S2 = r sum_{c in g} gamma_c (b_c - mean a_c)
//   dx = r gamma_c dz - r S1 / M - (x - mean) r^2 S2 / M
// Sums run in float over blocks of tiles (below) and in double across blocks.
#include "model/group_norm_swish.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

namespace ddpm {
namespace {

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define DDPM_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DDPM_CPU_CLONES
#endif

// exp(x) without branches, so that loops calling it vectorise (Cephes' expf: x = n ln2 + f,
// |f| <= ln2 / 2, a degree-5 polynomial for e^f, 2^n from the exponent bits). Relative error
// about 1e-7 against float64 exp over the clamped range [-87.3, 88.3] (a test checks it); inputs
// beyond it give 1.2e-38 or 2.2e38, never 0 or infinity.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  // n = floor(x log2(e) + 1/2), by truncation of a value made positive (it is >= -126 here).
  const float scaled = x * 1.44269504088896341f + 0.5f;
  const float n = static_cast<float>(static_cast<int32_t>(scaled + 128.0f) - 128);
  float f = x - n * 0.693359375f;
  f -= n * -2.12194440e-4f;
  const float f2 = f * f;
  float p = 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const float e = p * f2 + f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return e * std::bit_cast<float>(bits);
}

inline float sigmoid(float z) { return 1.0f / (1.0f + exp_approx(-z)); }

struct Dims {
  int64_t rows;      // H * W
  int64_t channels;  // C
  int64_t groups;    // G
  int64_t per_group() const { return channels / groups; }
};

// The loops run over tiles of whole rows, at least kTileValues values long: a row alone (16
// channels in small models) is too short a loop to vectorise well. Per-channel factors are
// repeated across a tile's rows, so that value j of a tile uses factor j.
constexpr int64_t kTileValues = 512;
constexpr int64_t kTilesPerBlock = 32;  // tiles summed in float before adding into double

struct Tiling {
  int64_t span;   // values per tile (a multiple of C)
  int64_t total;  // values per sample: rows * C
  explicit Tiling(const Dims& d)
      : span(std::min(d.rows, (kTileValues + d.channels - 1) / d.channels) * d.channels),
        total(d.rows * d.channels) {}
};

std::vector<float> tiled(const std::vector<float>& per_channel, int64_t span) {
  std::vector<float> result(span);
  for (int64_t j = 0; j < span; ++j) result[j] = per_channel[j % per_channel.size()];
  return result;
}

// Adds a tile of float sums into per-channel double totals and clears it; called every
// kTilesPerBlock tiles and at the end of a sample.
void fold_into(std::vector<float>& tile_sums, std::vector<double>& totals) {
  const size_t channels = totals.size();
  for (size_t j = 0; j < tile_sums.size(); ++j) totals[j % channels] += tile_sums[j];
  std::fill(tile_sums.begin(), tile_sums.end(), 0.0f);
}

bool ends_block(const Tiling& t, int64_t start, int64_t& tiles) {
  if (++tiles < kTilesPerBlock && start + t.span < t.total) return false;
  tiles = 0;
  return true;
}

// The hot loops below are written out in the cloned functions themselves: a lambda or helper
// template would be compiled once for the baseline ISA and miss the AVX2 clone.
// One sample: statistics, then the normalised (and swished) output.
DDPM_CPU_CLONES
void forward_sample(const float* x, const float* gamma, const float* beta, float* y, float* mean,
                    float* rstd, Dims d, double eps, bool swish) {
  const int64_t C = d.channels, D = d.per_group();
  const Tiling t(d);
  // Sums of v = x - pivot_c, with pivot_c the channel's first value: the variance then comes
  // from small deviations instead of the difference of two large sums (a mean far from 0, or a
  // group of one value, would lose it to rounding).
  const std::vector<float> pivot(x, x + C);
  const std::vector<float> pivot_t = tiled(pivot, t.span);
  const float* __restrict p = pivot_t.data();
  std::vector<double> sum(C, 0.0), sum_sq(C, 0.0);
  std::vector<float> tile_sum(t.span, 0.0f), tile_sum_sq(t.span, 0.0f);
  int64_t tiles = 0;
  for (int64_t start = 0; start < t.total; start += t.span) {
    const int64_t length = std::min(t.span, t.total - start);
    const float* __restrict in = x + start;
    float* __restrict s1 = tile_sum.data();
    float* __restrict s2 = tile_sum_sq.data();
    for (int64_t j = 0; j < length; ++j) {
      const float v = in[j] - p[j];
      s1[j] += v;
      s2[j] += v * v;
    }
    if (ends_block(t, start, tiles)) {
      fold_into(tile_sum, sum);
      fold_into(tile_sum_sq, sum_sq);
    }
  }
  std::vector<float> scale(C), group_mean(C);
  const double count = double(d.rows * D);
  const double rows = double(d.rows);
  for (int64_t g = 0; g < d.groups; ++g) {
    double s = 0.0;
    for (int64_t c = g * D; c < (g + 1) * D; ++c) s += sum[c] + rows * pivot[c];
    const double m = s / count;
    // sum over the channel of (x - m)^2 = sum (v + pivot - m)^2
    double squares = 0.0;
    for (int64_t c = g * D; c < (g + 1) * D; ++c) {
      const double offset = double(pivot[c]) - m;
      squares += sum_sq[c] + 2.0 * offset * sum[c] + rows * offset * offset;
    }
    const double r = 1.0 / std::sqrt(std::max(squares / count, 0.0) + eps);
    mean[g] = float(m);
    rstd[g] = float(r);
    for (int64_t c = g * D; c < (g + 1) * D; ++c) {
      scale[c] = float(r * gamma[c]);
      group_mean[c] = float(m);
    }
  }
  // z = (x - mean) r gamma + beta: centred first, so that a large r (a group of nearly equal
  // values) does not cancel two large terms.
  const std::vector<float> scale_t = tiled(scale, t.span), mean_t = tiled(group_mean, t.span),
                           beta_t = tiled(std::vector<float>(beta, beta + C), t.span);
  const float* __restrict a = scale_t.data();
  const float* __restrict mu = mean_t.data();
  const float* __restrict b = beta_t.data();
  for (int64_t start = 0; start < t.total; start += t.span) {
    const int64_t length = std::min(t.span, t.total - start);
    const float* __restrict in = x + start;
    float* __restrict out = y + start;
    if (swish) {
      for (int64_t j = 0; j < length; ++j) {
        const float z = (in[j] - mu[j]) * a[j] + b[j];
        out[j] = z * sigmoid(z);
      }
    } else {
      for (int64_t j = 0; j < length; ++j) out[j] = (in[j] - mu[j]) * a[j] + b[j];
    }
  }
}

// One sample: dx, and this sample's parts of dgamma and dbeta ([C] each).
DDPM_CPU_CLONES
void backward_sample(const float* x, const float* dy, const float* gamma, const float* beta,
                     const float* mean, const float* rstd, float* dx, double* dgamma,
                     double* dbeta, Dims d, bool swish) {
  const int64_t C = d.channels, D = d.per_group();
  const Tiling t(d);
  std::vector<float> scale(C), shift(C);
  for (int64_t c = 0; c < C; ++c) {
    scale[c] = rstd[c / D] * gamma[c];
    shift[c] = beta[c] - mean[c / D] * scale[c];
  }
  const std::vector<float> scale_t = tiled(scale, t.span), shift_t = tiled(shift, t.span);
  // dz, written into dx, with a_c = sum dz and b_c = sum dz x. (A centred x - mean here would
  // be more accurate for means far from 0, but GCC 12 then vectorises none of this loop.)
  std::vector<double> a(C, 0.0), b(C, 0.0);
  std::vector<float> tile_a(t.span, 0.0f), tile_b(t.span, 0.0f);
  const float* __restrict k = scale_t.data();
  const float* __restrict k0 = shift_t.data();
  int64_t tiles = 0;
  for (int64_t start = 0; start < t.total; start += t.span) {
    const int64_t length = std::min(t.span, t.total - start);
    const float* __restrict in = x + start;
    const float* __restrict grad = dy + start;
    float* __restrict out = dx + start;
    float* __restrict s1 = tile_a.data();
    float* __restrict s2 = tile_b.data();
    if (swish) {
      for (int64_t j = 0; j < length; ++j) {
        const float z = in[j] * k[j] + k0[j];
        const float s = sigmoid(z);
        const float dz = grad[j] * s * (1.0f + z * (1.0f - s));
        out[j] = dz;
        s1[j] += dz;
        s2[j] += dz * in[j];
      }
    } else {
      for (int64_t j = 0; j < length; ++j) {
        out[j] = grad[j];
        s1[j] += grad[j];
        s2[j] += grad[j] * in[j];
      }
    }
    if (ends_block(t, start, tiles)) {
      fold_into(tile_a, a);
      fold_into(tile_b, b);
    }
  }
  const double count = double(d.rows * D);
  std::vector<float> k_dz(C), k_x(C), k_0(C);
  for (int64_t g = 0; g < d.groups; ++g) {
    const double m = mean[g], r = rstd[g];
    double s1 = 0.0, s2 = 0.0;
    for (int64_t c = g * D; c < (g + 1) * D; ++c) {
      const double centred = b[c] - m * a[c];  // sum_hw dz (x - mean)
      dbeta[c] = a[c];
      dgamma[c] = r * centred;
      s1 += gamma[c] * a[c];
      s2 += gamma[c] * centred * r;
    }
    // dx = r gamma dz - (x - mean) r^2 S2 / M - r S1 / M
    const double coefficient_x = -r * r * s2 / count;
    const double constant = -r * s1 / count - m * coefficient_x;
    for (int64_t c = g * D; c < (g + 1) * D; ++c) {
      k_dz[c] = float(r * gamma[c]);
      k_x[c] = float(coefficient_x);
      k_0[c] = float(constant);
    }
  }
  const std::vector<float> k_dz_t = tiled(k_dz, t.span), k_x_t = tiled(k_x, t.span),
                           k_0_t = tiled(k_0, t.span);
  const float* __restrict f_dz = k_dz_t.data();
  const float* __restrict f_x = k_x_t.data();
  const float* __restrict f_0 = k_0_t.data();
  for (int64_t start = 0; start < t.total; start += t.span) {
    const int64_t length = std::min(t.span, t.total - start);
    const float* __restrict in = x + start;
    float* __restrict out = dx + start;
    for (int64_t j = 0; j < length; ++j) out[j] = f_dz[j] * out[j] + f_x[j] * in[j] + f_0[j];
  }
}

Dims dims_of(const torch::Tensor& x, int64_t groups) {
  return {x.size(2) * x.size(3), x.size(1), groups};
}

struct ForwardResult {
  torch::Tensor y, mean, rstd;
};

ForwardResult fused_forward(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight,
                            const torch::Tensor& bias, double eps, bool swish) {
  RECORD_FUNCTION("ddpm::group_norm_swish", std::vector<c10::IValue>{});
  const Dims d = dims_of(x, groups);
  const int64_t n = x.size(0);
  auto y = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  auto mean = torch::empty({n, groups}, x.options());
  auto rstd = torch::empty({n, groups}, x.options());
  const float* in = x.data_ptr<float>();
  const float* gamma = weight.data_ptr<float>();
  const float* beta = bias.data_ptr<float>();
  float* out = y.data_ptr<float>();
  float* mean_out = mean.data_ptr<float>();
  float* rstd_out = rstd.data_ptr<float>();
  const int64_t sample = d.rows * d.channels;
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      forward_sample(in + i * sample, gamma, beta, out + i * sample, mean_out + i * groups,
                     rstd_out + i * groups, d, eps, swish);
    }
  });
  return {y, mean, rstd};
}

class GroupNormSwishFunction : public torch::autograd::Function<GroupNormSwishFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               int64_t groups, double eps, bool swish) {
    ForwardResult result = fused_forward(x, groups, weight, bias, eps, swish);
    ctx->save_for_backward({x, weight, bias, result.mean, result.rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["swish"] = swish;
    return result.y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad_outputs) {
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "group_norm_swish: the fused CPU kernel has no second derivative "
                "(backward with create_graph=true)");
    RECORD_FUNCTION("ddpm::group_norm_swish_backward", std::vector<c10::IValue>{});
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& weight = saved[1];
    const torch::Tensor& bias = saved[2];
    const torch::Tensor& mean = saved[3];
    const torch::Tensor& rstd = saved[4];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const bool swish = ctx->saved_data["swish"].toBool();
    const auto dy = grad_outputs[0].contiguous(at::MemoryFormat::ChannelsLast);
    const Dims d = dims_of(x, groups);
    const int64_t n = x.size(0);
    auto dx = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
    auto dgamma_parts = torch::empty({n, d.channels}, x.options().dtype(torch::kFloat64));
    auto dbeta_parts = torch::empty_like(dgamma_parts);
    const int64_t sample = d.rows * d.channels;
    const float* in = x.data_ptr<float>();
    const float* grad = dy.data_ptr<float>();
    const float* gamma = weight.data_ptr<float>();
    const float* beta = bias.data_ptr<float>();
    const float* m = mean.data_ptr<float>();
    const float* r = rstd.data_ptr<float>();
    float* out = dx.data_ptr<float>();
    double* dgamma = dgamma_parts.data_ptr<double>();
    double* dbeta = dbeta_parts.data_ptr<double>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        backward_sample(in + i * sample, grad + i * sample, gamma, beta, m + i * groups,
                        r + i * groups, out + i * sample, dgamma + i * d.channels,
                        dbeta + i * d.channels, d, swish);
      }
    });
    return {dx, dgamma_parts.sum(0).to(torch::kFloat32), dbeta_parts.sum(0).to(torch::kFloat32),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

bool is_cpu_float_vector(const torch::Tensor& t, int64_t size) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat32 &&
         t.dim() == 1 && t.size(0) == size && t.is_contiguous();
}

}  // namespace

float kernel_exp(float x) { return exp_approx(x); }

bool uses_fused_group_norm(const torch::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
         x.numel() > 0 && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

torch::Tensor group_norm_swish(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight,
                               const torch::Tensor& bias, double eps, bool swish) {
  TORCH_CHECK(x.dim() == 4, "group_norm_swish expects [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(groups > 0 && x.size(1) % groups == 0, "group_norm_swish: ", x.size(1),
              " channels are not divisible into ", groups, " groups");
  const bool fused = uses_fused_group_norm(x) && is_cpu_float_vector(weight, x.size(1)) &&
                     is_cpu_float_vector(bias, x.size(1));
  if (!fused) {
    auto y = at::group_norm(x, groups, weight, bias, eps);
    if (!swish) return y;
    return y.requires_grad() ? at::silu(y) : at::silu_(y);
  }
  const bool needs_grad = torch::GradMode::is_enabled() &&
                          (x.requires_grad() || weight.requires_grad() || bias.requires_grad());
  if (!needs_grad) return fused_forward(x, groups, weight, bias, eps, swish).y;
  return GroupNormSwishFunction::apply(x, weight, bias, groups, eps, swish);
}

}  // namespace ddpm
