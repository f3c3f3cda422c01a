// The processes of a data-parallel run talking to each other through LibTorch's c10d: a TCP
// rendezvous store on rank 0's host, then NCCL for CUDA tensors or Gloo for CPU tensors. Every
// rank must make the same calls in the same order. A collective that fails (a rank died, the
// network broke) or waits longer than the timeout throws ddpm::Error (runtime) naming the rank
// and what to check, so a broken run ends on every rank instead of hanging.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <vector>

#include "distributed/distributed_env.h"

namespace ddpm {

class ProcessGroup {
 public:
  // Rendezvous with the other env.world_size - 1 ranks at env.master_addr:env.master_port
  // (rank 0 listens there). Collectives run on `device` (CUDA: NCCL, CPU: Gloo). Gloo binds to
  // the interface in GLOO_SOCKET_IFNAME when set, to loopback when the master is on this
  // machine's loopback, else to the address this machine's hostname resolves to.
  ProcessGroup(const DistributedEnv& env, torch::Device device, std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world_size() const;
  const char* backend_name() const;  // "nccl" or "gloo"
  torch::Device device() const;      // where its tensors must live

  // Overwrites every tensor with rank 0's values (tensors of one dtype and device per call).
  void broadcast_from_rank0(const std::vector<torch::Tensor>& tensors);
  // Replaces every tensor by its mean over the ranks: flattened into buckets of at most
  // bucket_bytes, all-reduced (all buckets in flight at once), scaled, copied back.
  void average(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  // Sum over the ranks, in place, of one tensor on the group's device.
  void sum(torch::Tensor& tensor);
  // Blocks until every rank has called it.
  void barrier();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ddpm
