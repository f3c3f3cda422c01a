// spdlog behind ddpm::log (see log.h). This file must not include LibTorch.
#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace ddpm::log {

void setup() {
  auto logger = spdlog::stderr_color_mt("ddpm");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
}

void set_rank(int rank) {
  if (rank == 0) return;
  spdlog::default_logger()->set_pattern("%^%l%$: [rank " + std::to_string(rank) + "] %v");
  spdlog::set_level(spdlog::level::warn);
}

void info(const std::string& message) { spdlog::info("{}", message); }
void warn(const std::string& message) { spdlog::warn("{}", message); }
void error(const std::string& message) { spdlog::error("{}", message); }

}  // namespace ddpm::log
