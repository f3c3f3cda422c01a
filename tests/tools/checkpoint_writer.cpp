// Test helper: writes a large checkpoint to PATH again and again (step 1, 2, ...) until
// killed, so a test can kill it mid-write and check that PATH still loads.
// Usage: checkpoint_writer PATH
#include <iostream>

#include "formats/checkpoint.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: checkpoint_writer PATH\n";
    return 2;
  }
  ddpm::TrainingState state;
  state.model["weight"] = torch::randn({4 << 20});  // 16 MiB: writing takes a while
  for (int64_t step = 1;; ++step) {
    state.step = step;
    ddpm::save_checkpoint(argv[1], state);
  }
}
