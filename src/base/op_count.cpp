// Thread-local op counting (see op_count.h).
#include "base/op_count.h"

namespace ddpm {
namespace {
thread_local OpCount* active_count = nullptr;
}  // namespace

OpCounter::OpCounter() : previous_(active_count) { active_count = &count_; }

OpCounter::~OpCounter() { active_count = previous_; }

void count_op(double flops, const torch::Tensor& output) {
  if (!active_count) return;
  active_count->flops += flops;
  active_count->activation_elements += static_cast<double>(output.numel());
}

}  // namespace ddpm
