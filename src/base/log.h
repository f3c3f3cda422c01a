// Logging, with spdlog kept behind plain functions: LibTorch ships fmt headers of its own that
// clash with the fmt the system's spdlog is built against, so no file that includes LibTorch may
// include spdlog. Messages go to standard error; command output goes to standard output.
#pragma once

#include <string>

namespace ddpm::log {

void setup();  // "level: message" lines on standard error, coloured on a terminal
// In a multi-process run: rank 0 logs as before; other ranks prefix "[rank R] " and log only
// warnings and errors, so one run prints its progress once.
void set_rank(int rank);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace ddpm::log
