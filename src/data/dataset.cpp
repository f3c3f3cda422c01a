// The threaded, deterministic DataLoader; see dataset.h. Workers take whole
// batches by sequence number (batch k after the last restore), so which thread builds a batch
// never changes its content; next() hands them out in order from a bounded set of results.
#include "data/dataset.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <numeric>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "base/seed_mix.h"
#include "ddpm/error.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

bool flip_decision(uint64_t seed, int64_t epoch, int64_t position) {
  const uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^
                                static_cast<uint64_t>(position));
  return (h >> 63) != 0;
}

enum FileState : uint8_t { kUnknown, kFilling, kGood, kBad };
// data.max_image_pixels: its default and its largest value (config.cpp) are image_io.h's.
static_assert(DataConfig{}.max_image_pixels == kMaxImagePixels);
static_assert(kMaxImagePixelsLimit == int64_t{16384} * 16384);

constexpr size_t kMaxExamples = 5;

}  // namespace

void check_batch_split(int batch_size, int world_size) {
  if (batch_size % world_size != 0) {
    throw config_error("train.batch_size",
                       "is " + std::to_string(batch_size) + ", which the " +
                           std::to_string(world_size) +
                           " processes cannot share evenly (it is the global batch); make it a "
                           "multiple of the number of processes");
  }
}

class DataLoader::Impl {
 public:
  Impl(std::vector<fs::path> files, const DataConfig& data, int batch_size, uint64_t seed, int rank,
       int world_size, std::vector<int64_t> labels);
  ~Impl() { stop_workers(); }

  Batch next();
  void restore(const LoaderState& state);
  void pin_memory(bool enabled) { pin_memory_ = enabled; }

  struct Result {
    Batch batch;
    std::exception_ptr error;
  };

  const std::vector<fs::path> files_;
  const std::vector<int64_t> labels_;
  const DataConfig data_;
  const int batch_size_, rank_, world_size_, num_workers_;
  const int local_batch_;  // this rank's part of each batch
  std::atomic<bool> pin_memory_{false};
  const uint64_t seed_;
  const int64_t batches_per_epoch_;
  const size_t image_bytes_;
  std::unique_ptr<uint8_t[]> cache_;  // N decoded images, C × H × W each, when they fit
  std::unique_ptr<std::atomic<uint8_t>[]> file_state_;
  std::atomic<int64_t> skipped_{0};

  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable work_ready_, result_ready_;
  LoaderState start_;     // the position of sequence number 0; set only while no worker runs
  int64_t started_ = 0;   // sequence numbers handed to workers
  int64_t consumed_ = 0;  // sequence numbers returned by next()
  std::map<int64_t, Result> results_;
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  bool warned_ = false;
  std::vector<std::string> examples_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> permutations_;

 private:
  void stop_workers();
  void work();
  Batch make_batch(int64_t sequence);
  std::shared_ptr<const std::vector<int64_t>> permutation(int64_t epoch);
  // Returns the index of the file that was loaded.
  int64_t load_position(const std::vector<int64_t>& order, int64_t position, uint8_t* chw);
  bool load_file(int64_t index, uint8_t* chw);
};

DataLoader::Impl::Impl(std::vector<fs::path> files, const DataConfig& data, int batch_size,
                       uint64_t seed, int rank, int world_size, std::vector<int64_t> labels)
    : files_(std::move(files)),
      labels_(std::move(labels)),
      data_(data),
      batch_size_(batch_size),
      rank_(rank),
      world_size_(world_size),
      num_workers_(std::max(1, data.workers)),
      local_batch_(world_size > 0 ? batch_size / world_size : 0),
      seed_(seed),
      batches_per_epoch_(batch_size > 0 ? static_cast<int64_t>(files_.size()) / batch_size : 0),
      image_bytes_(static_cast<size_t>(data.channels) * data.height * data.width) {
  validate_data(data_);
  if (files_.empty()) {
    throw Error(ErrorKind::runtime, "the data loader was given no image files; check data.path");
  }
  if (!labels_.empty() && labels_.size() != files_.size()) {
    throw Error(ErrorKind::runtime, "data loader: " + std::to_string(labels_.size()) +
                                        " labels for " + std::to_string(files_.size()) +
                                        " files");
  }
  if (batch_size < 1 || world_size < 1 || rank < 0 || rank >= world_size) {
    throw Error(ErrorKind::runtime,
                "data loader: impossible batch size " + std::to_string(batch_size) + ", rank " +
                    std::to_string(rank) + " or world size " + std::to_string(world_size));
  }
  check_batch_split(batch_size, world_size);
  if (batches_per_epoch_ < 1) {
    throw Error(ErrorKind::runtime,
                "data.path '" + data.path + "' has " + std::to_string(files_.size()) +
                    " images, fewer than one batch of " + std::to_string(batch_size) +
                    "; lower train.batch_size or add images");
  }
  file_state_ = std::make_unique<std::atomic<uint8_t>[]>(files_.size());
  const uint64_t cache_bytes = static_cast<uint64_t>(files_.size()) * image_bytes_;
  if (cache_bytes <= static_cast<uint64_t>(data.cache_mb) << 20) {
    // Left uninitialised: the system maps pages only as images are written.
    cache_.reset(new (std::nothrow) uint8_t[cache_bytes]);
  }
}

void DataLoader::Impl::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& worker : workers_) worker.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = false;
}

void DataLoader::Impl::work() {
  const int64_t prefetch = num_workers_ + 2;  // batches decoded ahead of next()
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_ready_.wait(lock, [&] { return stopping_ || started_ < consumed_ + prefetch; });
    if (stopping_) return;
    const int64_t sequence = started_++;
    lock.unlock();
    Result result;
    try {
      result.batch = make_batch(sequence);
    } catch (...) {
      result.error = std::current_exception();
    }
    lock.lock();
    results_[sequence] = std::move(result);
    result_ready_.notify_all();
  }
}

DataLoader::Batch DataLoader::Impl::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (workers_.empty()) {
    for (int i = 0; i < num_workers_; ++i) workers_.emplace_back([this] { work(); });
  }
  result_ready_.wait(lock, [&] { return results_.count(consumed_) != 0; });
  const auto found = results_.find(consumed_);
  if (found->second.error) std::rethrow_exception(found->second.error);  // kept: stays broken
  Batch batch = std::move(found->second.batch);
  results_.erase(found);
  ++consumed_;
  work_ready_.notify_all();
  if (!warned_ && !examples_.empty()) {
    warned_ = true;
    std::string names;
    for (const std::string& example : examples_) names += "\n  " + example;
    log::warn("skipped " + std::to_string(skipped_.load()) +
              " unreadable image file(s) so far (each is replaced by the next readable image "
              "of the shuffled order; later ones are counted without a message):" +
              names);
  }
  return batch;
}

void DataLoader::Impl::restore(const LoaderState& state) {
  if (state.epoch < 0 || state.batch < 0 || state.batch >= batches_per_epoch_) {
    throw Error(ErrorKind::runtime,
                "cannot restore the data loader to epoch " + std::to_string(state.epoch) +
                    ", batch " + std::to_string(state.batch) + ": an epoch has " +
                    std::to_string(batches_per_epoch_) +
                    " batches (did the data set, batch size or number of processes change "
                    "since the checkpoint?)");
  }
  stop_workers();
  std::lock_guard<std::mutex> lock(mutex_);
  start_ = state;
  started_ = consumed_ = 0;
  results_.clear();
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::Impl::permutation(int64_t epoch) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& entry = permutations_[epoch];
  if (!entry) {
    // Fisher-Yates driven by splitmix64, in plain C++: torch::randperm would run an OpenMP
    // region on this worker thread, and a second OpenMP team makes libgomp stop spinning in
    // the training step's team (measured: training at half speed on 60,000 images).
    auto order = std::make_shared<std::vector<int64_t>>(files_.size());
    std::iota(order->begin(), order->end(), int64_t{0});
    uint64_t counter = splitmix64(seed_ * 1000003ull + static_cast<uint64_t>(epoch));
    for (size_t i = order->size(); i > 1; --i) {
      const uint64_t random = splitmix64(counter += 0x9E3779B97F4A7C15ULL);  // a Weyl sequence
      const auto j = static_cast<size_t>((static_cast<unsigned __int128>(random) * i) >> 64);
      std::swap((*order)[i - 1], (*order)[j]);
    }
    entry = std::move(order);
    // Workers are at most a few batches apart: older epochs are no longer needed.
    permutations_.erase(permutations_.begin(), permutations_.lower_bound(epoch - 1));
  }
  return entry;
}

DataLoader::Batch DataLoader::Impl::make_batch(int64_t sequence) {
  const int64_t position = start_.batch + sequence;
  const int64_t epoch = start_.epoch + position / batches_per_epoch_;
  const int64_t batch = position % batches_per_epoch_;
  const auto order = permutation(epoch);
  const int height = data_.height, width = data_.width;
  torch::Tensor out = torch::empty({local_batch_, data_.channels, height, width},
                                   torch::TensorOptions(torch::kFloat).pinned_memory(pin_memory_));
  float* target = out.data_ptr<float>();
  torch::Tensor labels;
  if (!labels_.empty()) labels = torch::empty({local_batch_}, torch::kLong);
  std::vector<uint8_t> chw(image_bytes_);
  for (int i = 0; i < local_batch_; ++i) {
    const int64_t position = batch * batch_size_ + int64_t{rank_} * local_batch_ + i;
    const int64_t file = load_position(*order, position, chw.data());
    if (labels.defined()) labels.data_ptr<int64_t>()[i] = labels_[file];
    const bool flip = data_.random_flip && flip_decision(seed_, epoch, position);
    for (size_t row = 0; row < image_bytes_ / width; ++row) {
      const uint8_t* from = chw.data() + row * width;
      for (int x = 0; x < width; ++x) {
        *target++ = from[flip ? width - 1 - x : x] / 127.5f - 1.0f;
      }
    }
  }
  return {out, labels};
}

int64_t DataLoader::Impl::load_position(const std::vector<int64_t>& order, int64_t position,
                                     uint8_t* chw) {
  const int64_t count = static_cast<int64_t>(order.size());
  for (int64_t step = 0; step < count; ++step) {
    const int64_t file = order[(position + step) % count];
    if (load_file(file, chw)) return file;
    const int64_t readable = count - skipped_.load();
    if (readable < batch_size_) {
      throw Error(ErrorKind::runtime,
                  "only " + std::to_string(readable) + " of the " + std::to_string(count) +
                      " image files in data.path '" + data_.path +
                      "' are readable, fewer than one batch of " + std::to_string(batch_size_) +
                      "; see the warning that names the unreadable files, fix or remove them, "
                      "or lower train.batch_size");
    }
  }
  throw Error(ErrorKind::runtime, "none of the " + std::to_string(count) +
                                      " image files in data.path '" + data_.path +
                                      "' is readable; check the files");
}

bool DataLoader::Impl::load_file(int64_t index, uint8_t* chw) {
  std::atomic<uint8_t>& state = file_state_[index];
  const uint8_t known = state.load(std::memory_order_acquire);
  if (known == kBad) return false;
  if (known == kGood && cache_) {
    std::memcpy(chw, cache_.get() + index * image_bytes_, image_bytes_);
    return true;
  }
  Image image;
  try {
    image = resize_and_crop(read_image(files_[index], data_.channels, data_.max_image_pixels),
                            data_.height, data_.width);
  } catch (const Error& failure) {
    uint8_t expected = kUnknown;
    if (state.compare_exchange_strong(expected, kBad)) {
      skipped_.fetch_add(1);
      std::lock_guard<std::mutex> lock(mutex_);
      if (examples_.size() < kMaxExamples) examples_.push_back(failure.what());
    }
    return false;
  }
  const size_t plane = static_cast<size_t>(image.height) * image.width;
  for (int c = 0; c < image.channels; ++c) {
    for (size_t i = 0; i < plane; ++i) chw[c * plane + i] = image.pixels[i * image.channels + c];
  }
  uint8_t expected = kUnknown;
  if (!cache_) {
    state.compare_exchange_strong(expected, kGood);
  } else if (state.compare_exchange_strong(expected, kFilling)) {
    std::memcpy(cache_.get() + index * image_bytes_, chw, image_bytes_);
    state.store(kGood, std::memory_order_release);
  }
  return true;
}

DataLoader::DataLoader(std::vector<fs::path> files, const DataConfig& data, int batch_size,
                       uint64_t seed, int rank, int world_size, std::vector<int64_t> labels)
    : impl_(std::make_unique<Impl>(std::move(files), data, batch_size, seed, rank, world_size,
                                   std::move(labels))) {}
DataLoader::~DataLoader() = default;

torch::Tensor DataLoader::next() { return impl_->next().images; }
DataLoader::Batch DataLoader::next_batch() { return impl_->next(); }
void DataLoader::pin_memory(bool enabled) { impl_->pin_memory(enabled); }
void DataLoader::restore(const LoaderState& state) { impl_->restore(state); }
int64_t DataLoader::batches_per_epoch() const { return impl_->batches_per_epoch_; }
int64_t DataLoader::skipped_files() const { return impl_->skipped_.load(); }
bool DataLoader::caches_images() const { return impl_->cache_ != nullptr; }

LoaderState DataLoader::state() const {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  const int64_t position = impl_->start_.batch + impl_->consumed_;
  return {impl_->start_.epoch + position / impl_->batches_per_epoch_,
          position % impl_->batches_per_epoch_};
}

std::vector<std::string> DataLoader::skipped_examples() const {
  std::lock_guard<std::mutex> lock(impl_->mutex_);
  return impl_->examples_;
}

}  // namespace ddpm
