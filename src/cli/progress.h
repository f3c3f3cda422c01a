// Progress display for long loops: a redrawn bar on a terminal, periodic plain lines otherwise.
#pragma once

#include <cstdint>
#include <string>

namespace ddpm::cli {

class ProgressDisplay {
 public:
  // `label` precedes the counts ("step", "sampling step"); plain lines every `every` units.
  ProgressDisplay(std::string label, int64_t every);
  ~ProgressDisplay();
  // `done` of `total` units, after `elapsed` seconds spent since unit `start` (a resumed run
  // starts past 0); `detail` is appended (loss, images/s).
  void update(int64_t done, int64_t total, double elapsed, const std::string& detail,
              int64_t start = 0);
  void finish();

 private:
  std::string label_;
  int64_t every_;
  bool terminal_;
  bool drawn_ = false;
};

std::string format_duration(double seconds);

}  // namespace ddpm::cli
