// NCCL for ProcessGroup; see process_group_nccl.h. Compiled only against a CUDA LibTorch.
#include "distributed/process_group_nccl.h"

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

namespace ddpm {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size, torch::Device device,
                                                    std::chrono::milliseconds timeout) {
  // NCCL binds a communicator to the current device: make it this rank's GPU.
  c10::cuda::set_device(device.index());
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, options);
}

}  // namespace ddpm
