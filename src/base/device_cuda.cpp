// CUDA-only device details; compiled only when LibTorch was built with CUDA.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdio>

#include "base/device.h"

namespace ddpm {

std::string describe_cuda_device(int index) {
  const cudaDeviceProp* properties = at::cuda::getDeviceProperties(index);
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB",
                double(properties->totalGlobalMem) / double(1ull << 30));
  return std::string(properties->name) + ", " + memory + ", compute " +
         std::to_string(properties->major) + "." + std::to_string(properties->minor);
}

int64_t cuda_peak_memory_bytes(int index) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
      .peak;
}

void cuda_reset_peak_memory(int index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(index);
}

}  // namespace ddpm
