// GroupNorm, optionally followed by swish (SiLU, x * sigmoid(x)), as one operation. Every norm
// of the UNet is one of these two, and on the CPU the network runs channels-last (NHWC), where
// ATen's GroupNorm kernel is slow for narrow groups (2 to 4 channels) and the swish costs a
// second pass over the activations. For float32 channels-last tensors on the CPU this runs our
// own kernel: one pass for the statistics, one that normalises and applies swish, and a backward
// pass of the same shape (autograd works as usual). Every other input (NCHW, CUDA, other dtypes)
// goes to ATen's group_norm and silu, so results agree with them everywhere to float rounding.
#pragma once

#include <torch/torch.h>

namespace ddpm {

// x: [N, C, H, W]; weight and bias: [C]; C divisible by groups. Returns a tensor in x's memory
// format. Differentiable in x, weight and bias (first derivatives only).
torch::Tensor group_norm_swish(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight,
                               const torch::Tensor& bias, double eps, bool swish);

// Whether group_norm_swish() runs the fused kernel for x (exposed for tests).
bool uses_fused_group_norm(const torch::Tensor& x);

// The kernel's branch-free exp (exposed for tests): inputs clamped to [-87.3, 88.3].
float kernel_exp(float x);

}  // namespace ddpm
