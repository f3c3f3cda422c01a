// The building blocks of the DDPM UNet (Ho et al. 2020). Module and parameter names follow
// diffusers' UNet2DModel, so a state dict moves between the two unchanged.
#pragma once

#include <torch/torch.h>

namespace ddpm {

// Sinusoidal embedding of the timestep indices t [B]: for i < dim/2,
// freq_i = exp(-ln(10000) * i / (dim/2 - shift)); the result is [sin(t freq), cos(t freq)]
// ([cos, sin] when cos_first), [B, dim]. DDPM's is shift 1, sin first. The float32 arithmetic
// is diffusers' get_timestep_embedding, operation for operation, so that the embeddings agree
// to the last bit (at t ~ 1000 one rounding of a frequency moves the angle by ~1e-4).
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim, double shift = 1.0,
                                 bool cos_first = false);

// The original network's initialisations: variance scaling (fan_avg, uniform) with `scale`,
// zero bias; scale 0 gives exact zeros.
void init_variance_scaling(torch::nn::Conv2d& conv, double scale);
void init_variance_scaling(torch::nn::Linear& linear, double scale);

// sinusoidal(dim) -> Linear(dim, 4 dim) -> swish -> Linear(4 dim, 4 dim).
struct TimestepEmbeddingImpl : torch::nn::Module {
  TimestepEmbeddingImpl(int64_t channels, int64_t embedding_channels);
  torch::Tensor forward(const torch::Tensor& sinusoid);
  torch::nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// GroupNorm -> swish -> conv3x3 -> + Linear(swish(temb)) -> GroupNorm -> swish -> dropout ->
// conv3x3 (zero-initialised), plus the input (through a 1x1 conv when the width changes).
struct ResnetBlockImpl : torch::nn::Module {
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels, int64_t embedding_channels,
                  int64_t groups, double eps, double dropout);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& time_embedding);
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  torch::nn::Linear time_emb_proj{nullptr};
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(ResnetBlock);

// Self-attention over the H*W positions with a residual connection; `heads` heads of
// channels/heads each, scaled by 1/sqrt(channels/heads). The output projection starts at zero.
struct AttentionBlockImpl : torch::nn::Module {
  AttentionBlockImpl(int64_t channels, int64_t heads, int64_t groups, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t heads;
  torch::nn::GroupNorm group_norm{nullptr};
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::Linear out_proj{nullptr};    // registered as to_out.0, the name diffusers uses
  torch::nn::ModuleList to_out{nullptr};
};
TORCH_MODULE(AttentionBlock);

// Stride-2 3x3 conv. Asymmetric padding is TensorFlow's 'SAME': one row and column of zeros at
// the bottom and right only, as in the original network; symmetric is one on every side.
struct DownsampleImpl : torch::nn::Module {
  DownsampleImpl(int64_t channels, bool symmetric_padding);
  torch::Tensor forward(const torch::Tensor& x);
  bool symmetric_padding;
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest-neighbour x2, then a 3x3 conv.
struct UpsampleImpl : torch::nn::Module {
  explicit UpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// Counted wrappers: run the layer and report its work to an active OpCounter.
torch::Tensor run_conv(torch::nn::Conv2d& conv, const torch::Tensor& x);
torch::Tensor run_linear(torch::nn::Linear& linear, const torch::Tensor& x);
// The norm's GroupNorm, followed by swish when `swish` (group_norm_swish.h).
torch::Tensor run_norm(torch::nn::GroupNorm& norm, const torch::Tensor& x, bool swish);

}  // namespace ddpm
