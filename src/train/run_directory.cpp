// A training run's directory; see run_directory.h.
#include "train/run_directory.h"

#include "base/atomic_file.h"
#include "base/log.h"
#include "config/config_json.h"
#include "formats/checkpoint.h"
#include "formats/run_log.h"

namespace ddpm {

namespace fs = std::filesystem;

void prepare_run_dir(const Config& config, const TrainRun& run, bool writer) {
  const bool has_checkpoints = !list_checkpoints(run.run_dir).empty();
  if (run.resume && !has_checkpoints) {
    throw Error(ErrorKind::usage,
                "--resume: run directory '" + run.run_dir.string() +
                    "' has no checkpoint to resume from; start without --resume" +
                    (writer ? "" : " (every rank must see the run directory: put it on a "
                                   "shared filesystem)"));
  }
  if (!run.resume && has_checkpoints) {
    throw Error(ErrorKind::usage, "run directory '" + run.run_dir.string() +
                                      "' already holds checkpoints; pass --resume to continue "
                                      "that run, or choose another --out");
  }
  if (!writer) return;
  std::error_code error;
  fs::create_directories(run.run_dir / "checkpoints", error);
  fs::create_directories(run.run_dir / "samples", error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot create run directory '" + run.run_dir.string() +
                                        "': " + error.message());
  }
  // Under the lock nothing else writes here: temporary files are what a killed run left.
  int stale = 0;
  for (const char* folder : {"", "checkpoints", "samples"}) {
    stale += remove_stale_temporaries(run.run_dir / folder);
  }
  if (stale > 0) {
    log::info("removed " + std::to_string(stale) + " temporary file(s) left by a killed run in " +
              run.run_dir.string());
  }
  // A fresh start in a directory without checkpoints: metric lines there are of a run that was
  // killed before its first checkpoint, and its steps are about to run again.
  if (!run.resume && fs::exists(run.run_dir / "metrics.jsonl", error)) {
    drop_metrics_after(run.run_dir / "metrics.jsonl", 0);
  }
  write_file_atomically(run.run_dir / "config.json", config_to_json(config).dump(2) + "\n");
  AppendOnlyFile(run.run_dir / "command.txt").append_line(run.command_line);
}

Error stopped_by_write_failure(const Error& error, const fs::path& last_checkpoint) {
  return Error(error.kind(),
               std::string(error.what()) + ". Training stopped; " +
                   (last_checkpoint.empty()
                        ? std::string("no checkpoint was written yet: free space and start again")
                        : "the last good checkpoint is " + last_checkpoint.string() +
                              ": free space, then run the same command with --resume"));
}

}  // namespace ddpm
