// Choosing the device from a config setting, and describing it for logs.
#pragma once

#include <string>

#include <torch/torch.h>

namespace ddpm {

// "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N". Throws ddpm::Error
// (runtime) when a CUDA device is asked for and none is available.
torch::Device resolve_device(const std::string& setting);

// e.g. "cpu (2 threads)" or "cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB, compute 9.0)".
std::string describe_device(const torch::Device& device);

#ifdef DDPM_WITH_CUDA
// Name, memory and compute capability of a CUDA device; only in builds against a CUDA LibTorch.
std::string describe_cuda_device(int index);
#endif

}  // namespace ddpm
