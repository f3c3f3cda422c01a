// A training run's TensorBoard output: RUN_DIR/tensorboard/events.out.tfevents.TIME.HOST.PID,
// a new file for each run or resume (TensorBoard reads them together), written by rank 0 with
// the formats of formats/tfevents.h. metrics.jsonl stays the run's record: a write that fails
// (a full disk) warns once and stops this output, never the run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace ddpm {

class TensorBoardWriter {
 public:
  // Creates the folder and the file; on failure warns and writes nothing after.
  explicit TensorBoardWriter(const std::filesystem::path& run_dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Every number of a metrics.jsonl line but "step", as a scalar under its key at line["step"].
  void scalars(const nlohmann::json& line);
  // A PNG file (a sample grid) as an image under `tag`.
  void image_file(int64_t step, const std::string& tag, const std::filesystem::path& png);
  void text(int64_t step, const std::string& tag, const std::string& text);

  const std::filesystem::path& path() const { return path_; }
  bool writing() const { return fd_ >= 0; }

 private:
  void write_event(const std::string& event);
  void stop(const std::string& why);

  std::filesystem::path path_;
  int fd_ = -1;
  int64_t size_ = 0;  // bytes of whole records written
};

}  // namespace ddpm
