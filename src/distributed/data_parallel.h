// Keeping the ranks of a data-parallel run in agreement: the device each rank trains on, rank
// 0's weights broadcast to all, and checks that the ranks did not drift apart (different
// checkpoints resumed, different weights after training).
#pragma once

#include <torch/torch.h>

#include <string>

#include "distributed/distributed_env.h"
#include "distributed/process_group.h"

namespace ddpm {

// The device of this rank: `configured` as resolved by resolve_device(), except that "auto" and
// "cuda" mean cuda:LOCAL_RANK in a multi-process run (one GPU per process). Throws ddpm::Error
// when the node has fewer GPUs than processes.
torch::Device rank_device(const std::string& configured, const DistributedEnv& env);

// Overwrites the module's parameters and buffers with rank 0's.
void broadcast_module(ProcessGroup& group, torch::nn::Module& module);

// Throws ddpm::Error (runtime) on every rank unless every rank holds bit-identical parameters
// and buffers (compared through a float64 sum and sum of squares per tensor); `what` names
// them in the message ("the model after step 100"). The module lives on group.device().
void check_same_weights(ProcessGroup& group, const torch::nn::Module& module,
                        const std::string& what);

// Throws ddpm::Error (runtime) on every rank unless every rank passes the same value; the
// message says "<what> differs between the ranks (this rank: <value>); <hint>".
void check_same_value(ProcessGroup& group, int64_t value, const std::string& what,
                      const std::string& hint);

}  // namespace ddpm
