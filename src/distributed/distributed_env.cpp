// Reading the launcher's variables; see distributed_env.h.
#include "distributed/distributed_env.h"

#include <cctype>
#include <cstdlib>
#include <limits>

#include "ddpm/error.h"

namespace ddpm {
namespace {

Error env_error(const std::string& name, const std::string& reason) {
  return Error(ErrorKind::usage, "environment variable " + name + " " + reason);
}

// A whole decimal number in [low, high], or an error naming the variable.
int parse_int(const std::string& name, const std::string& text, long low, long high) {
  size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size()) {
    throw env_error(name, "is '" + text + "', not a whole number");
  }
  if (value < low || value > high) {
    throw env_error(name, "is " + text + ", outside " + std::to_string(low) + ".." +
                              std::to_string(high));
  }
  return static_cast<int>(value);
}

std::optional<int> optional_int(const EnvLookup& lookup, const std::string& name, long low,
                                long high) {
  const auto text = lookup(name);
  if (!text) return std::nullopt;
  return parse_int(name, *text, low, high);
}

int required_int(const EnvLookup& lookup, const std::string& name, long low, long high,
                 const std::string& launcher) {
  const auto value = optional_int(lookup, name, low, high);
  if (!value) throw env_error(name, "is not set, but " + launcher);
  return *value;
}

constexpr long kMaxRanks = 1 << 20;

DistributedEnv from_torchrun(const EnvLookup& lookup) {
  const std::string why = "WORLD_SIZE is (as torchrun sets both)";
  DistributedEnv env;
  env.launcher = "torchrun";
  env.world_size = required_int(lookup, "WORLD_SIZE", 1, kMaxRanks, why);
  env.rank = required_int(lookup, "RANK", 0, env.world_size - 1, why);
  env.local_rank = optional_int(lookup, "LOCAL_RANK", 0, kMaxRanks).value_or(0);
  if (env.world_size == 1) return env;
  const auto addr = lookup("MASTER_ADDR");
  if (!addr || addr->empty()) {
    throw env_error("MASTER_ADDR", "is not set; with WORLD_SIZE > 1 it names rank 0's host");
  }
  env.master_addr = *addr;
  env.master_port = required_int(lookup, "MASTER_PORT", 1, 65535,
                                 "with WORLD_SIZE > 1 it names rank 0's port");
  return env;
}

DistributedEnv from_slurm(const EnvLookup& lookup) {
  const std::string why = "this is a Slurm job step (SLURM_STEP_ID is set)";
  DistributedEnv env;
  env.launcher = "slurm";
  const auto step_tasks = optional_int(lookup, "SLURM_STEP_NUM_TASKS", 1, kMaxRanks);
  env.world_size = step_tasks ? *step_tasks
                              : required_int(lookup, "SLURM_NTASKS", 1, kMaxRanks, why);
  env.rank = required_int(lookup, "SLURM_PROCID", 0, env.world_size - 1, why);
  env.local_rank = optional_int(lookup, "SLURM_LOCALID", 0, kMaxRanks).value_or(0);
  if (env.world_size == 1) return env;
  if (const auto addr = lookup("MASTER_ADDR"); addr && !addr->empty()) {
    env.master_addr = *addr;
  } else {
    auto nodes = lookup("SLURM_STEP_NODELIST");
    if (!nodes) nodes = lookup("SLURM_JOB_NODELIST");
    if (!nodes) {
      throw env_error("MASTER_ADDR", "is not set and neither is SLURM_STEP_NODELIST or "
                                     "SLURM_JOB_NODELIST; export MASTER_ADDR=<rank 0's host>");
    }
    env.master_addr = first_slurm_host(*nodes);
  }
  if (const auto port = optional_int(lookup, "MASTER_PORT", 1, 65535)) {
    env.master_port = *port;
  } else {
    const auto job = optional_int(lookup, "SLURM_JOB_ID", 0, std::numeric_limits<int>::max());
    env.master_port = 15000 + (job ? *job % 20000 : 0);
  }
  return env;
}

}  // namespace

std::string DistributedEnv::describe() const {
  if (!distributed()) return "one process";
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size) + " (local " +
         std::to_string(local_rank) + "), master " + master_addr + ":" +
         std::to_string(master_port) + ", launched by " + launcher;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

DistributedEnv read_distributed_env(const EnvLookup& lookup) {
  if (lookup("WORLD_SIZE") || lookup("RANK")) return from_torchrun(lookup);
  if (lookup("SLURM_STEP_ID") && (lookup("SLURM_PROCID") || lookup("SLURM_NTASKS"))) {
    return from_slurm(lookup);
  }
  return DistributedEnv{};
}

std::string first_slurm_host(const std::string& node_list) {
  const auto malformed = [&] {
    return Error(ErrorKind::usage, "cannot read the Slurm node list '" + node_list +
                                       "'; export MASTER_ADDR=<rank 0's host>");
  };
  // The first entry ends at the first comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < node_list.size(); ++end) {
    const char c = node_list[end];
    if (c == '[') ++depth;
    if (c == ']' && --depth < 0) throw malformed();
    if (c == ',' && depth == 0) break;
  }
  if (depth != 0) throw malformed();
  const std::string entry = node_list.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) {
    if (entry.empty()) throw malformed();
    return entry;
  }
  const size_t close = entry.find(']', open);
  // The first value of the bracket: digits up to a '-' or ',' (its zero padding is kept).
  size_t digits = open + 1;
  while (digits < close && std::isdigit(static_cast<unsigned char>(entry[digits]))) ++digits;
  if (digits == open + 1 || (digits != close && entry[digits] != '-' && entry[digits] != ',')) {
    throw malformed();
  }
  const std::string host =
      entry.substr(0, open) + entry.substr(open + 1, digits - open - 1) + entry.substr(close + 1);
  if (host.find('[') != std::string::npos) throw malformed();  // several ranges: not supported
  return host;
}

}  // namespace ddpm
