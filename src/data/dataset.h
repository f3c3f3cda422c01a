// Training data: a threaded loader that decodes, resizes and flips the images of a folder
// (image_folder.h lists them) into float batches in [-1, 1]. The batches depend only on the file
// list, the config, the seed, the rank and the epoch, never on the number of worker threads or
// their timing, so a run resumed from a LoaderState sees exactly the batches it would have seen.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace ddpm {

// Throws ddpm::Error (config, naming train.batch_size) unless world_size processes can share a
// global batch of batch_size evenly.
void check_batch_split(int batch_size, int world_size);

// Where a loader stands: the epoch, and the number of batches of it already returned.
struct LoaderState {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const LoaderState&) const = default;
};

// Epoch e visits the files in a permutation (a Fisher-Yates shuffle driven by splitmix64 from
// seed * 1000003 + e), in global batches of batch_size consecutive files (the incomplete last
// one dropped). In a run of world_size processes, rank r takes the r-th of the world_size equal
// parts of every global batch, so the ranks' shards are disjoint, they stay in step, and
// together they see exactly the batches one process would. With data.random_flip, the
// horizontal flip of each image is a hash of (seed, e, position in the permutation).
//
// A file that cannot be decoded (corrupt, truncated, empty, oversized) is skipped: its place
// is taken by the next readable file of the permutation (wrapping around), and it is counted
// and never tried again. The first few are named in one warning. When the decoded data set
// (N × C × H × W bytes) fits in data.cache_mb, decoded images are kept in memory.
class DataLoader {
 public:
  // batch_size is the global batch; world_size must divide it. Throws ddpm::Error when there
  // are no files or fewer than one batch, or when rank / world_size / batch_size are impossible.
  // `labels`: the class of each file (class_folders.h), or empty for unlabelled data.
  DataLoader(std::vector<std::filesystem::path> files, const DataConfig& data, int batch_size,
             uint64_t seed, int rank = 0, int world_size = 1, std::vector<int64_t> labels = {});
  ~DataLoader();  // stops and joins the worker threads
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // This rank's part of the next batch: CPU float32 [batch_size / world_size, C, H, W] in
  // [-1, 1]. Throws ddpm::Error when too
  // few files are readable to fill a batch (then every later call throws it again).
  torch::Tensor next();

  struct Batch {
    torch::Tensor images;  // as next() returns them
    torch::Tensor labels;  // CPU int64 [batch_size / world_size], undefined without labels
  };
  // next() with the class of each image (of the file that took its place, for a skipped one).
  Batch next_batch();

  // Batches in page-locked (pinned) memory from now on, so that a non-blocking copy to a CUDA
  // device runs asynchronously, overlapping the step before it. Needs a usable CUDA device.
  void pin_memory(bool enabled);

  LoaderState state() const;               // the position of the batch next() returns next
  void restore(const LoaderState& state);  // continue from a state() of an identical loader

  int64_t batches_per_epoch() const;
  int64_t skipped_files() const;                      // unreadable files found so far
  std::vector<std::string> skipped_examples() const;  // the first few, as "path: reason"
  bool caches_images() const;                         // whether decoded images are kept in memory

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ddpm
