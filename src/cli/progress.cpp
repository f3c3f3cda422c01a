// Progress display; see progress.h.
#include "progress.h"

#include <unistd.h>

#include <cstdio>

#include "base/log.h"

namespace ddpm::cli {

std::string format_duration(double seconds) {
  const long total = seconds > 0 ? static_cast<long>(seconds + 0.5) : 0;
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  } else {
    std::snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
  }
  return text;
}

ProgressDisplay::ProgressDisplay(std::string label, int64_t every)
    : label_(std::move(label)), every_(every > 0 ? every : 1), terminal_(::isatty(2) == 1) {}

ProgressDisplay::~ProgressDisplay() { finish(); }

void ProgressDisplay::update(int64_t done, int64_t total, double elapsed,
                             const std::string& detail, int64_t start) {
  const double fraction = total > 0 ? double(done) / double(total) : 1.0;
  const double eta = done > start ? elapsed / double(done - start) * double(total - done) : 0.0;
  char counts[64];
  std::snprintf(counts, sizeof counts, "%lld/%lld", static_cast<long long>(done),
                static_cast<long long>(total));
  if (terminal_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '-');
    std::fprintf(stderr, "\r%s %s [%s] %s  ETA %s\033[K", label_.c_str(), counts, bar.c_str(),
                 detail.c_str(), format_duration(eta).c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else if (done % every_ == 0 || done == total) {
    log::info(label_ + " " + counts + "  " + detail + "  elapsed " + format_duration(elapsed) +
              "  ETA " + format_duration(eta));
  }
}

void ProgressDisplay::finish() {
  if (drawn_) std::fputc('\n', stderr);
  drawn_ = false;
}

}  // namespace ddpm::cli
