// Where a step's time goes: an OpProfile records every ATen operator (and CUDA kernel on a GPU)
// run on any thread while it is recording, through PyTorch's Kineto profiler. stop() returns a
// table of operators with their self time (time not spent in operators they called), and can
// save the whole timeline as a Chrome trace (chrome://tracing or https://ui.perfetto.dev).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace ddpm {

struct OpTime {
  std::string name;       // e.g. aten::convolution, or a CUDA kernel's name
  bool on_device = false;  // a kernel on the accelerator rather than a CPU-side operator
  int64_t calls = 0;
  double self_ms = 0.0;   // total time minus the time of operators nested inside it
  double total_ms = 0.0;  // wall time between start and end, summed over calls
};

class OpProfile {
 public:
  // Starts recording; throws ddpm::Error (runtime) when another profile is already recording.
  explicit OpProfile(torch::Device device);
  ~OpProfile();  // stops recording if stop() was not called
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  // Stops recording and returns every operator's times, largest self time first. With a
  // non-empty trace_path, also writes the Chrome trace there (ddpm::Error naming it on failure).
  std::vector<OpTime> stop(const std::string& trace_path = "");

 private:
  bool recording_ = false;
};

// Self times of operators from intervals [start, end) recorded per thread: an interval that
// lies inside another on the same thread is nested in the innermost one containing it, and
// its length is taken from that parent's self time. Exposed for tests.
struct OpInterval {
  std::string name;
  uint64_t thread = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  bool on_device = false;
};
std::vector<OpTime> op_times(std::vector<OpInterval> intervals);

// Prints the first `rows` of a table from stop() with each row's share of `wall_ms`.
void print_op_times(std::ostream& out, const std::vector<OpTime>& times, double wall_ms,
                    size_t rows);

}  // namespace ddpm
