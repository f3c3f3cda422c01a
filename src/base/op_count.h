// Counting the work of a forward pass: while an OpCounter is alive on a thread, the UNet's
// blocks report each operation they run (its floating-point operations and the elements of its
// output). Running one forward pass inside a counter gives exact FLOPs for the real shapes, and
// the sum of output elements estimates the activations that training keeps for the backward.
#pragma once

#include <torch/torch.h>

namespace ddpm {

struct OpCount {
  double flops = 0.0;                // multiply and add counted separately (2 per MAC)
  double activation_elements = 0.0;  // elements of every counted op's output
};

class OpCounter {
 public:
  OpCounter();
  ~OpCounter();
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;
  const OpCount& count() const { return count_; }

 private:
  OpCount count_;
  OpCount* previous_;  // the counter this one shadows while alive
};

// Adds one op to the active counter of this thread; does nothing when none is active.
void count_op(double flops, const torch::Tensor& output);

}  // namespace ddpm
