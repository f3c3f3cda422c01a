// CUDA-only device details; compiled only when LibTorch was built with CUDA.
#include <ATen/cuda/CUDAContext.h>

#include <cstdio>

#include "ddpm/device.h"

namespace ddpm {

std::string describe_cuda_device(int index) {
  const cudaDeviceProp* properties = at::cuda::getDeviceProperties(index);
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB",
                double(properties->totalGlobalMem) / double(1ull << 30));
  return std::string(properties->name) + ", " + memory + ", compute " +
         std::to_string(properties->major) + "." + std::to_string(properties->minor);
}

}  // namespace ddpm
