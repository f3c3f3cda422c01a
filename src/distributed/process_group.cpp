// c10d process groups behind ddpm::ProcessGroup; see process_group.h. The NCCL backend lives in
// process_group_nccl.cpp, compiled only against a CUDA LibTorch.
#include "distributed/process_group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <exception>
#include <functional>

#include "ddpm/error.h"
#ifdef DDPM_WITH_CUDA
#include "distributed/process_group_nccl.h"
#endif

namespace ddpm {
namespace {

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const DistributedEnv& env) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  }
  if (is_loopback(env.master_addr)) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

std::string what_of(const std::exception& failure) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&failure)) {
    return c10_error->what_without_backtrace();
  }
  return failure.what();
}

}  // namespace

class ProcessGroup::Impl {
 public:
  DistributedEnv env;
  torch::Device device;
  std::chrono::milliseconds timeout;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;

  Impl(const DistributedEnv& env, torch::Device device, std::chrono::milliseconds timeout)
      : env(env), device(device), timeout(timeout) {}

  // Runs a collective; a failure becomes a ddpm::Error that says what to look at.
  void run(const char* what, const std::function<void()>& collective) const {
    try {
      collective();
    } catch (const std::exception& failure) {
      throw Error(ErrorKind::runtime,
                  "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                      ": " + what + " failed: " + what_of(failure) +
                      ". Another rank has probably stopped (look for its error above), or the "
                      "network between the ranks broke, or a rank was slower than "
                      "train.dist_timeout_s (" + std::to_string(timeout.count() / 1000) +
                      " s); resume from the last checkpoint with --resume");
    }
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work) const { work->wait(timeout); }
};

ProcessGroup::ProcessGroup(const DistributedEnv& env, torch::Device device,
                           std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(env, device, timeout)) {
  if (!env.distributed()) {
    throw Error(ErrorKind::runtime, "a process group needs more than one process");
  }
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.master_port);
    options.isServer = env.rank == 0;
    options.numWorkers = static_cast<size_t>(env.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    const auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    impl_->store = c10::make_intrusive<c10d::PrefixStore>("ddpm", tcp);
  } catch (const std::exception& failure) {
    throw Error(ErrorKind::runtime,
                "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                    ": rendezvous at " + where + " failed: " + what_of(failure) +
                    ". Check that all " + std::to_string(env.world_size) +
                    " ranks were started, that MASTER_ADDR and MASTER_PORT are the same for "
                    "every rank and reachable from it, and that rank 0's port is free");
  }
  impl_->run("connecting the process group", [&] {
    if (device.is_cuda()) {
#ifdef DDPM_WITH_CUDA
      impl_->backend = make_nccl_backend(impl_->store, env.rank, env.world_size, device, timeout);
#else
      throw Error(ErrorKind::runtime, "this ddpm was built without CUDA: no NCCL backend");
#endif
    } else {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(gloo_device(env));
      impl_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank,
                                                                   env.world_size, options);
    }
  });
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::world_size() const { return impl_->env.world_size; }
torch::Device ProcessGroup::device() const { return impl_->device; }
const char* ProcessGroup::backend_name() const {
  return impl_->device.is_cuda() ? "nccl" : "gloo";
}

void ProcessGroup::broadcast_from_rank0(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  impl_->run("broadcasting rank 0's weights", [&] {
    std::vector<torch::Tensor> flat = {torch::cat(
        [&] {
          std::vector<torch::Tensor> views;
          for (const auto& tensor : tensors) views.push_back(tensor.detach().reshape({-1}));
          return views;
        }())};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    options.timeout = impl_->timeout;
    impl_->wait(impl_->backend->broadcast(flat, options));
    torch::NoGradGuard no_grad;
    int64_t offset = 0;
    for (const auto& tensor : tensors) {
      tensor.copy_(flat[0].narrow(0, offset, tensor.numel()).view_as(tensor));
      offset += tensor.numel();
    }
  });
}

void ProcessGroup::average(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) {
  if (tensors.empty()) return;
  impl_->run("averaging gradients", [&] {
    // Buckets of consecutive tensors, each flattened into one buffer and reduced in flight.
    std::vector<std::vector<torch::Tensor>> bucket_members(1);
    int64_t bytes = 0;
    for (const auto& tensor : tensors) {
      const int64_t size = tensor.numel() * tensor.element_size();
      if (!bucket_members.back().empty() && bytes + size > bucket_bytes) {
        bucket_members.emplace_back();
        bytes = 0;
      }
      bucket_members.back().push_back(tensor);
      bytes += size;
    }
    std::vector<std::vector<torch::Tensor>> buffers;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = impl_->timeout;
    for (const auto& members : bucket_members) {
      std::vector<torch::Tensor> views;
      for (const auto& tensor : members) views.push_back(tensor.detach().reshape({-1}));
      buffers.push_back({torch::cat(views)});
      works.push_back(impl_->backend->allreduce(buffers.back(), options));
    }
    const double scale = 1.0 / double(impl_->env.world_size);
    torch::NoGradGuard no_grad;
    for (size_t b = 0; b < works.size(); ++b) {
      impl_->wait(works[b]);
      const torch::Tensor& flat = buffers[b][0].mul_(scale);
      int64_t offset = 0;
      for (const auto& tensor : bucket_members[b]) {
        tensor.copy_(flat.narrow(0, offset, tensor.numel()).view_as(tensor));
        offset += tensor.numel();
      }
    }
  });
}

void ProcessGroup::sum(torch::Tensor& tensor) {
  impl_->run("summing across ranks", [&] {
    std::vector<torch::Tensor> one = {tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    options.timeout = impl_->timeout;
    impl_->wait(impl_->backend->allreduce(one, options));
  });
}

void ProcessGroup::barrier() {
  impl_->run("waiting for every rank (barrier)", [&] {
    c10d::BarrierOptions options;
    options.timeout = impl_->timeout;
    if (impl_->device.is_cuda()) options.device_ids = {impl_->device.index()};
    impl_->wait(impl_->backend->barrier(options));
  });
}

}  // namespace ddpm
