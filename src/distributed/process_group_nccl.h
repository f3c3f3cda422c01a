// The NCCL backend of ProcessGroup (CUDA tensors). Exists only in a CUDA build
// (process_group_nccl.cpp, DDPM_WITH_CUDA); without CUDA no CUDA device can be chosen.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>

#include <chrono>

namespace ddpm {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size, torch::Device device,
                                                    std::chrono::milliseconds timeout);

}  // namespace ddpm
