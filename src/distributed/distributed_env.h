// Where this process stands in a multi-process run, read from the variables its launcher sets:
// torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or Slurm's srun
// (SLURM_PROCID, SLURM_STEP_NUM_TASKS or SLURM_NTASKS, SLURM_LOCALID, the master from
// MASTER_ADDR or the first host of the step's node list). No variables: one process.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace ddpm {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // index of this process on its node (its GPU)
  std::string master_addr;   // rank 0's host, where the rendezvous store listens
  int master_port = 0;
  std::string launcher = "none";  // none | torchrun | slurm

  bool distributed() const { return world_size > 1; }
  std::string describe() const;  // "rank 1 of 4 (local 1), master host:port, launched by torchrun"
};

// Reads an environment variable; nullopt when unset. Tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_env();

// torchrun's variables win when both sets are present (torchrun inside a Slurm allocation).
// Slurm's are used only inside a job step (SLURM_STEP_ID set, as srun does), so a batch script
// that runs `ddpm train` directly stays one process. Without MASTER_PORT under Slurm, the port
// is 15000 + SLURM_JOB_ID mod 20000, so jobs sharing a node do not collide.
// Throws ddpm::Error (usage) naming the variable for a missing, malformed or inconsistent value.
DistributedEnv read_distributed_env(const EnvLookup& lookup = process_env());

// The first host of a Slurm node list: "gpu[03-05,9],cpu1" -> "gpu03", "n[1-2]-ib" -> "n1-ib".
// Throws ddpm::Error (usage) for an empty or malformed list.
std::string first_slurm_host(const std::string& node_list);

}  // namespace ddpm
