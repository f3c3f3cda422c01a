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

// Peak memory since the last reset: bytes allocated on a CUDA device, or this process's peak
// resident set on the CPU (which resetting cannot lower).
int64_t peak_memory_bytes(const torch::Device& device);
void reset_peak_memory(const torch::Device& device);

// Whether the UNet should run channels-last on this device (UNetImpl::set_channels_last): on the
// CPU, where oneDNN's convolutions are up to 3x faster in NHWC for narrow layers and
// group_norm_swish() has an NHWC kernel; not (yet) on CUDA, where it has not been measured.
bool prefers_channels_last(const torch::Device& device);

// Waits for the device's queued work (a no-op on the CPU); for timings.
void synchronize(const torch::Device& device);

#ifdef DDPM_WITH_CUDA
// Only in builds against a CUDA LibTorch: name, memory and compute capability of a device, and
// the caching allocator's peak.
std::string describe_cuda_device(int index);
int64_t cuda_peak_memory_bytes(int index);
void cuda_reset_peak_memory(int index);
#endif

}  // namespace ddpm
