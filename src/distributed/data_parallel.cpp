// Agreement between the ranks; see data_parallel.h.
#include "distributed/data_parallel.h"

#include "base/device.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

std::vector<torch::Tensor> module_tensors(const torch::nn::Module& module) {
  std::vector<torch::Tensor> tensors = module.parameters();
  for (const auto& buffer : module.buffers()) tensors.push_back(buffer);
  return tensors;
}

// Every rank learns whether any rank passed true.
bool any_rank(ProcessGroup& group, bool mine, torch::Device device) {
  torch::Tensor votes = torch::full({1}, mine ? 1.0 : 0.0,
                                    torch::TensorOptions().dtype(torch::kFloat64).device(device));
  group.sum(votes);
  return votes.item<double>() > 0.0;
}

// True when `local` equals rank 0's `local` exactly.
bool equals_rank0(ProcessGroup& group, const torch::Tensor& local) {
  torch::Tensor rank0 = local.clone();
  group.broadcast_from_rank0({rank0});
  return torch::equal(rank0, local);
}

}  // namespace

torch::Device rank_device(const std::string& configured, const DistributedEnv& env) {
  torch::Device device = resolve_device(configured);
  if (!env.distributed() || !device.is_cuda() || (configured != "auto" && configured != "cuda")) {
    return device;
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  if (env.local_rank >= count) {
    throw Error(ErrorKind::runtime,
                "local rank " + std::to_string(env.local_rank) + " needs GPU cuda:" +
                    std::to_string(env.local_rank) + ", but this node has " +
                    std::to_string(count) + "; start at most one process per GPU "
                    "(torchrun --nproc-per-node, srun --ntasks-per-node)");
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
}

void broadcast_module(ProcessGroup& group, torch::nn::Module& module) {
  std::vector<torch::Tensor> floats, others;
  for (const auto& tensor : module_tensors(module)) {
    (tensor.is_floating_point() ? floats : others).push_back(tensor);
  }
  group.broadcast_from_rank0(floats);
  for (const auto& tensor : others) group.broadcast_from_rank0({tensor});
}

void check_same_weights(ProcessGroup& group, const torch::nn::Module& module,
                        const std::string& what) {
  // A fingerprint per tensor (sum and sum of squares in float64) compared with rank 0's.
  std::vector<torch::Tensor> parts;
  for (const auto& tensor : module_tensors(module)) {
    const torch::Tensor wide = tensor.detach().to(torch::kFloat64);
    parts.push_back(torch::stack({wide.sum(), wide.pow(2).sum()}));
  }
  const torch::Tensor fingerprint = torch::cat(parts);
  const bool differs = !equals_rank0(group, fingerprint);
  if (any_rank(group, differs, group.device())) {
    throw Error(ErrorKind::runtime,
                std::string("the ranks hold different weights for ") + what + " (this rank " +
                    (differs ? "differs from" : "agrees with") +
                    " rank 0). This is a bug or a broken GPU; please report it with the run's "
                    "command.txt and logs");
  }
}

void check_same_value(ProcessGroup& group, int64_t value, const std::string& what,
                      const std::string& hint) {
  const torch::Tensor mine = torch::full(
      {1}, double(value), torch::TensorOptions().dtype(torch::kFloat64).device(group.device()));
  const bool differs = !equals_rank0(group, mine);
  if (any_rank(group, differs, group.device())) {
    throw Error(ErrorKind::runtime, what + " differs between the ranks (this rank: " +
                                        std::to_string(value) + "); " + hint);
  }
}

}  // namespace ddpm
