// Device selection; see device.h.
#include "base/device.h"

#include <sys/resource.h>

#include "ddpm/error.h"

namespace ddpm {

torch::Device resolve_device(const std::string& setting) {
  if (setting == "cpu") return torch::kCPU;
  const bool available = torch::cuda::is_available();
  if (setting == "auto") return available ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
  if (!available) {
    throw Error(ErrorKind::runtime,
                "device '" + setting + "' was asked for, but no CUDA device is available (no GPU "
                "visible, or LibTorch was built without CUDA); use device 'auto' or 'cpu'");
  }
  const torch::Device device(setting);
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count) {
    throw Error(ErrorKind::runtime, "device '" + setting + "' does not exist: " +
                                        std::to_string(count) + " CUDA device(s) are visible");
  }
  return device.has_index() ? device : torch::Device(torch::kCUDA, 0);
}

std::string describe_device(const torch::Device& device) {
  if (device.is_cpu()) return "cpu (" + std::to_string(torch::get_num_threads()) + " threads)";
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) {
    return device.str() + " (" + describe_cuda_device(device.has_index() ? device.index() : 0) +
           ")";
  }
#endif
  return device.str();
}

int64_t peak_memory_bytes(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) return cuda_peak_memory_bytes(device.has_index() ? device.index() : 0);
#endif
  (void)device;
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

void reset_peak_memory(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) cuda_reset_peak_memory(device.has_index() ? device.index() : 0);
#endif
  (void)device;
}

bool prefers_channels_last(const torch::Device& device) { return device.is_cpu(); }

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

}  // namespace ddpm
