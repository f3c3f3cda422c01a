// Blocks of the DDPM UNet; see unet_blocks.h.
#include "model/unet_blocks.h"

#include <cmath>

#include "base/op_count.h"
#include "model/group_norm_swish.h"

namespace ddpm {
namespace F = torch::nn::functional;

namespace {

void init_weight(torch::Tensor& weight, torch::Tensor& bias, double fan_in, double fan_out,
                 double scale) {
  torch::NoGradGuard no_grad;
  if (scale == 0.0) {
    weight.zero_();
  } else {
    const double variance = scale / ((fan_in + fan_out) / 2.0);
    const double bound = std::sqrt(3.0 * variance);
    weight.uniform_(-bound, bound);
  }
  if (bias.defined()) bias.zero_();
}

torch::nn::Conv2d make_conv(int64_t in_channels, int64_t out_channels, int64_t kernel,
                            int64_t stride, int64_t padding, double init_scale) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in_channels, out_channels, kernel)
                             .stride(stride)
                             .padding(padding));
  init_variance_scaling(conv, init_scale);
  return conv;
}

torch::nn::Linear make_linear(int64_t in_features, int64_t out_features, double init_scale) {
  torch::nn::Linear linear(in_features, out_features);
  init_variance_scaling(linear, init_scale);
  return linear;
}

torch::nn::GroupNorm make_norm(int64_t groups, int64_t channels, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps));
}

}  // namespace

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, double shift,
                                 bool cos_first) {
  TORCH_CHECK(t.dim() == 1, "timesteps must have shape [batch], got ", t.sizes());
  TORCH_CHECK(dim >= 4 && dim % 2 == 0, "the embedding width must be even and >= 4, got ", dim);
  const int64_t half = dim / 2;
  TORCH_CHECK(shift >= 0.0 && shift < double(half), "the frequency shift must be in [0, ", half,
              "), got ", shift);
  const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(t.device());
  const auto exponent =
      (torch::arange(half, options) * -std::log(10000.0)) / (double(half) - shift);
  const auto angles = t.to(torch::kFloat32).unsqueeze(1) * torch::exp(exponent).unsqueeze(0);
  const auto sin = torch::sin(angles), cos = torch::cos(angles);
  return cos_first ? torch::cat({cos, sin}, 1) : torch::cat({sin, cos}, 1);
}

void init_variance_scaling(torch::nn::Conv2d& conv, double scale) {
  const auto& shape = conv->weight.sizes();
  const double receptive = double(shape[2] * shape[3]);
  init_weight(conv->weight, conv->bias, double(shape[1]) * receptive, double(shape[0]) * receptive,
              scale);
}

void init_variance_scaling(torch::nn::Linear& linear, double scale) {
  const auto& shape = linear->weight.sizes();
  init_weight(linear->weight, linear->bias, double(shape[1]), double(shape[0]), scale);
}

torch::Tensor run_conv(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  auto y = conv->forward(x);
  const auto& weight = conv->weight.sizes();  // [out, in, kh, kw]
  count_op(2.0 * double(weight[1] * weight[2] * weight[3]) * double(y.numel()), y);
  return y;
}

torch::Tensor run_linear(torch::nn::Linear& linear, const torch::Tensor& x) {
  auto y = linear->forward(x);
  count_op(2.0 * double(linear->weight.size(1)) * double(y.numel()), y);
  return y;
}

torch::Tensor run_norm(torch::nn::GroupNorm& norm, const torch::Tensor& x, bool swish) {
  const auto& options = norm->options;
  auto y = group_norm_swish(x, options.num_groups(), norm->weight, norm->bias, options.eps(), swish);
  // ATen's path keeps the normalised tensor for swish's backward too; the fused kernel does not.
  if (swish && !uses_fused_group_norm(x)) count_op(0.0, y);
  count_op(0.0, y);
  return y;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t channels, int64_t embedding_channels)
    : linear_1(register_module("linear_1", make_linear(channels, embedding_channels, 1.0))),
      linear_2(register_module("linear_2",
                               make_linear(embedding_channels, embedding_channels, 1.0))) {}

torch::Tensor TimestepEmbeddingImpl::forward(const torch::Tensor& sinusoid) {
  return run_linear(linear_2, torch::silu(run_linear(linear_1, sinusoid)));
}

ResnetBlockImpl::ResnetBlockImpl(int64_t in_channels, int64_t out_channels,
                                 int64_t embedding_channels, int64_t groups, double eps,
                                 double dropout_p)
    : norm1(register_module("norm1", make_norm(groups, in_channels, eps))),
      norm2(register_module("norm2", make_norm(groups, out_channels, eps))),
      conv1(register_module("conv1", make_conv(in_channels, out_channels, 3, 1, 1, 1.0))),
      conv2(register_module("conv2", make_conv(out_channels, out_channels, 3, 1, 1, 0.0))),
      time_emb_proj(
          register_module("time_emb_proj", make_linear(embedding_channels, out_channels, 1.0))),
      dropout(register_module("dropout", torch::nn::Dropout(dropout_p))) {
  if (in_channels != out_channels) {
    conv_shortcut =
        register_module("conv_shortcut", make_conv(in_channels, out_channels, 1, 1, 0, 1.0));
  }
}

torch::Tensor ResnetBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  // The adds write into the convolutions' outputs, which no backward pass reads.
  auto h = run_conv(conv1, run_norm(norm1, x, /*swish=*/true));
  const auto time = run_linear(time_emb_proj, torch::silu(temb));
  h.add_(time.view({time.size(0), time.size(1), 1, 1}));
  h = run_conv(conv2, dropout->forward(run_norm(norm2, h, /*swish=*/true)));
  h.add_(conv_shortcut ? run_conv(conv_shortcut, x) : x);
  count_op(0.0, h);
  return h;
}

AttentionBlockImpl::AttentionBlockImpl(int64_t channels, int64_t heads_, int64_t groups,
                                       double eps)
    : heads(heads_),
      group_norm(register_module("group_norm", make_norm(groups, channels, eps))),
      to_q(register_module("to_q", make_linear(channels, channels, 1.0))),
      to_k(register_module("to_k", make_linear(channels, channels, 1.0))),
      to_v(register_module("to_v", make_linear(channels, channels, 1.0))),
      out_proj(make_linear(channels, channels, 0.0)),
      to_out(register_module("to_out", torch::nn::ModuleList(out_proj))) {
  TORCH_CHECK(channels % heads == 0, "attention width ", channels, " is not divisible by ", heads,
              " heads");
}

torch::Tensor AttentionBlockImpl::forward(const torch::Tensor& x) {
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t positions = height * width, head_channels = channels / heads;
  const auto normalized = run_norm(group_norm, x, /*swish=*/false);
  const auto sequence = normalized.flatten(2).transpose(1, 2);  // [B, N, C]
  const auto split_heads = [&](const torch::Tensor& t) {
    return t.view({batch, positions, heads, head_channels}).transpose(1, 2);  // [B, h, N, d]
  };
  const auto q = split_heads(run_linear(to_q, sequence));
  const auto k = split_heads(run_linear(to_k, sequence));
  const auto v = split_heads(run_linear(to_v, sequence));
  auto attended = at::scaled_dot_product_attention(q, k, v);
  count_op(4.0 * double(batch * positions * positions * channels), attended);
  attended = attended.transpose(1, 2).reshape({batch, positions, channels});
  const auto out = run_linear(out_proj, attended);
  auto y = out.transpose(1, 2).reshape({batch, channels, height, width}).add_(x);
  count_op(0.0, y);
  return y;
}

DownsampleImpl::DownsampleImpl(int64_t channels, bool symmetric)
    : symmetric_padding(symmetric),
      conv(register_module("conv",
                           make_conv(channels, channels, 3, 2, symmetric ? 1 : 0, 1.0))) {}

torch::Tensor DownsampleImpl::forward(const torch::Tensor& x) {
  if (symmetric_padding) return run_conv(conv, x);
  return run_conv(conv, F::pad(x, F::PadFuncOptions({0, 1, 0, 1})));
}

UpsampleImpl::UpsampleImpl(int64_t channels)
    : conv(register_module("conv", make_conv(channels, channels, 3, 1, 1, 1.0))) {}

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  const auto upsampled = F::interpolate(
      x, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0}).mode(
             torch::kNearest));
  count_op(0.0, upsampled);
  return run_conv(conv, upsampled);
}

}  // namespace ddpm
