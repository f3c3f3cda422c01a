#include "base/op_profile.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <ostream>
#include <set>
#include <utility>

#include <torch/csrc/autograd/profiler_kineto.h>

#include "ddpm/error.h"

namespace ddpm {
namespace {

namespace profiler = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// Only one profile records at a time in a process (Kineto's state is global).
bool g_recording = false;

}  // namespace

OpProfile::OpProfile(torch::Device device) {
  if (g_recording) throw Error(ErrorKind::runtime, "a profile is already recording");
  const ProfilerConfig config(ProfilerState::KINETO, /*report_input_shapes=*/false,
                              /*profile_memory=*/false);
  std::set<ActivityType> activities = {ActivityType::CPU};
  if (device.is_cuda()) activities.insert(ActivityType::CUDA);
  profiler::prepareProfiler(config, activities);
  profiler::enableProfiler(config, activities);
  recording_ = g_recording = true;
}

OpProfile::~OpProfile() {
  if (!recording_) return;
  try {
    profiler::disableProfiler();
  } catch (...) {  // a destructor must not throw; the profile is discarded either way
  }
  g_recording = false;
}

std::vector<OpTime> OpProfile::stop(const std::string& trace_path) {
  if (!recording_) throw Error(ErrorKind::runtime, "the profile was already stopped");
  recording_ = g_recording = false;
  const std::unique_ptr<profiler::ProfilerResult> result = profiler::disableProfiler();
  std::vector<OpInterval> intervals;
  intervals.reserve(result->events().size());
  for (const profiler::KinetoEvent& event : result->events()) {
    if (event.endNs() <= event.startNs()) continue;  // instants and markers
    const bool on_device = event.deviceType() != c10::DeviceType::CPU;
    intervals.push_back({event.name(),
                         on_device ? uint64_t(event.deviceResourceId()) : event.startThreadId(),
                         event.startNs(), event.endNs(), on_device});
  }
  if (!trace_path.empty()) {
    try {
      result->save(trace_path);
    } catch (const std::exception& error) {
      throw Error(ErrorKind::runtime, "cannot write the profile trace " + trace_path + ": " +
                                          error.what() + "; check that its folder exists");
    }
  }
  return op_times(std::move(intervals));
}

std::vector<OpTime> op_times(std::vector<OpInterval> intervals) {
  // Per thread, parents first: by start, the longer of two that start together first.
  std::sort(intervals.begin(), intervals.end(), [](const OpInterval& a, const OpInterval& b) {
    if (a.on_device != b.on_device) return a.on_device < b.on_device;
    if (a.thread != b.thread) return a.thread < b.thread;
    if (a.start_ns != b.start_ns) return a.start_ns < b.start_ns;
    return a.end_ns > b.end_ns;
  });
  std::vector<double> self_ns(intervals.size());
  std::vector<size_t> open;  // indices of the intervals enclosing the current one, innermost last
  for (size_t i = 0; i < intervals.size(); ++i) {
    const OpInterval& current = intervals[i];
    self_ns[i] = double(current.end_ns - current.start_ns);
    if (i > 0 && (intervals[i - 1].thread != current.thread ||
                  intervals[i - 1].on_device != current.on_device)) {
      open.clear();
    }
    while (!open.empty() && intervals[open.back()].end_ns <= current.start_ns) open.pop_back();
    if (!open.empty()) {
      const uint64_t nested_end = std::min(current.end_ns, intervals[open.back()].end_ns);
      self_ns[open.back()] -= double(nested_end - current.start_ns);
    }
    open.push_back(i);
  }
  std::map<std::pair<std::string, bool>, OpTime> by_name;
  for (size_t i = 0; i < intervals.size(); ++i) {
    OpTime& time = by_name[{intervals[i].name, intervals[i].on_device}];
    time.name = intervals[i].name;
    time.on_device = intervals[i].on_device;
    time.calls += 1;
    time.self_ms += self_ns[i] / 1e6;
    time.total_ms += double(intervals[i].end_ns - intervals[i].start_ns) / 1e6;
  }
  std::vector<OpTime> times;
  times.reserve(by_name.size());
  for (auto& entry : by_name) times.push_back(std::move(entry.second));
  std::sort(times.begin(), times.end(),
            [](const OpTime& a, const OpTime& b) { return a.self_ms > b.self_ms; });
  return times;
}

void print_op_times(std::ostream& out, const std::vector<OpTime>& times, double wall_ms,
                    size_t rows) {
  char line[256];
  std::snprintf(line, sizeof(line), "%-60s %8s %11s %7s %11s\n", "operator (self time first)",
                "calls", "self ms", "self %", "total ms");
  out << line;
  for (size_t i = 0; i < std::min(rows, times.size()); ++i) {
    const OpTime& time = times[i];
    std::string name = (time.on_device ? "[device] " : "") + time.name;
    if (name.size() > 60) name = name.substr(0, 57) + "...";
    std::snprintf(line, sizeof(line), "%-60s %8lld %11.2f %6.1f%% %11.2f\n", name.c_str(),
                  static_cast<long long>(time.calls), time.self_ms,
                  wall_ms > 0 ? 100.0 * time.self_ms / wall_ms : 0.0, time.total_ms);
    out << line;
  }
}

}  // namespace ddpm
