// Exit codes for each kind of failure, in one place.
#include "ddpm/error.h"

namespace ddpm {

int Error::exit_code() const {
  switch (kind_) {
    case ErrorKind::usage:
    case ErrorKind::config:
      return 2;
    case ErrorKind::runtime:
      return 1;
    case ErrorKind::interrupted:
      return 130;
  }
  return 1;
}

Error config_error(const std::string& key_path, const std::string& reason) {
  return Error(ErrorKind::config, "config key '" + key_path + "': " + reason);
}

}  // namespace ddpm
