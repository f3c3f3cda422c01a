// Running another program to its end from a command (`ddpm compile` runs torch's Python): its
// output goes to ours, and Ctrl-C or SIGTERM while it runs reach it too, so that the command
// can clean up after it and report the interruption.
#pragma once

#include <string>
#include <vector>

namespace ddpm::cli {

struct ChildResult {
  int exit_code = 0;  // the program's exit status; -1 when it died of a signal
  int signal = 0;     // the signal that ended it, or 0
  bool interrupted = false;  // we were sent SIGINT or SIGTERM while it ran (and passed it on)
};

// Runs `program` (looked up on PATH when it has no slash) with `arguments` and waits for it.
// Throws ddpm::Error (runtime) when it cannot be started. `environment`: "NAME=value" entries
// set for the child on top of ours.
ChildResult run_child(const std::string& program, const std::vector<std::string>& arguments,
                      const std::vector<std::string>& environment = {});

// The first line a program writes to standard output; ok is false when it cannot be run or
// exits with an error. Its standard error is discarded.
struct ChildLine {
  bool ok = false;
  std::string line;
};
ChildLine first_output_line(const std::string& program, const std::vector<std::string>& arguments);

}  // namespace ddpm::cli
