// The one exception type of the library (and of its C++ API, ddpm.h). It carries the kind of failure, which `main` maps to an
// exit code: usage and config errors exit 2, runtime failures 1, interruptions 130.
#pragma once

#include <stdexcept>
#include <string>

#include "ddpm/visibility.h"

namespace ddpm {

enum class ErrorKind { usage, config, runtime, interrupted };

class DDPM_API Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const;

 private:
  ErrorKind kind_;
};

// A config value that is missing, mistyped or impossible; `key_path` is e.g. "train.lr".
DDPM_API Error config_error(const std::string& key_path, const std::string& reason);

}  // namespace ddpm
