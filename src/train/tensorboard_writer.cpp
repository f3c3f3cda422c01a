// A run's TensorBoard event file; see tensorboard_writer.h.
#include "train/tensorboard_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>

#include "base/log.h"
#include "formats/tfevents.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || !name[0]) return "localhost";
  return name;
}

// A PNG's size and channels from its IHDR chunk; false when it is not a PNG.
bool png_shape(const std::string& png, int& height, int& width, int& channels) {
  if (png.size() < 33 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return false;
  const auto big_endian = [&](size_t at) {
    return (uint32_t(uint8_t(png[at])) << 24) | (uint32_t(uint8_t(png[at + 1])) << 16) |
           (uint32_t(uint8_t(png[at + 2])) << 8) | uint32_t(uint8_t(png[at + 3]));
  };
  width = static_cast<int>(big_endian(16));
  height = static_cast<int>(big_endian(20));
  switch (uint8_t(png[25])) {  // colour type
    case 0: channels = 1; return true;
    case 2: channels = 3; return true;
    case 4: channels = 2; return true;
    case 6: channels = 4; return true;
    default: return false;
  }
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const fs::path& run_dir) {
  const auto seconds = static_cast<long long>(now_seconds());
  const fs::path first = run_dir / "tensorboard" /
                         ("events.out.tfevents." + std::to_string(seconds) + "." + host_name() +
                          "." + std::to_string(::getpid()));
  std::error_code error;
  fs::create_directories(first.parent_path(), error);
  // Never another run's file: a second start in the same second and process gets a suffix.
  for (int attempt = 0; attempt < 100; ++attempt) {
    path_ = attempt ? fs::path(first.string() + "." + std::to_string(attempt)) : first;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0 || errno != EEXIST) break;
  }
  if (fd_ < 0) {
    log::warn("cannot create " + path_.string() + " (" + std::strerror(errno) +
              "): no TensorBoard output for this run; metrics.jsonl has every figure");
    return;
  }
  write_event(file_version_event(now_seconds()));
}

TensorBoardWriter::~TensorBoardWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void TensorBoardWriter::stop(const std::string& why) {
  log::warn("TensorBoard output stopped: " + why + " writing " + path_.string() +
            "; training goes on and metrics.jsonl keeps every figure");
  if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
    // The reader stops at a partial last record; nothing more to do.
  }
  ::close(fd_);
  fd_ = -1;
}

void TensorBoardWriter::write_event(const std::string& event) {
  if (fd_ < 0) return;
  const std::string record = tfrecord(event);
  size_t written = 0;
  while (written < record.size()) {
    const ssize_t result = ::write(fd_, record.data() + written, record.size() - written);
    if (result < 0 && errno == EINTR) continue;
    if (result <= 0) {
      stop(result < 0 ? std::strerror(errno) : "no space written");
      return;
    }
    written += static_cast<size_t>(result);
  }
  size_ += static_cast<int64_t>(record.size());
}

void TensorBoardWriter::scalars(const nlohmann::json& line) {
  if (fd_ < 0 || !line.contains("step") || !line["step"].is_number_integer()) return;
  const auto step = line["step"].get<int64_t>();
  const double wall_time = now_seconds();
  for (const auto& item : line.items()) {
    if (item.key() == "step" || !item.value().is_number()) continue;
    write_event(scalar_event(wall_time, step, item.key(), item.value().get<float>()));
  }
}

void TensorBoardWriter::image_file(int64_t step, const std::string& tag, const fs::path& png) {
  if (fd_ < 0) return;
  std::ifstream stream(png, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(stream), {}};
  int height = 0, width = 0, channels = 0;
  if (!png_shape(bytes, height, width, channels)) {
    log::warn(png.string() + " is not a readable PNG; not added to TensorBoard");
    return;
  }
  write_event(image_event(now_seconds(), step, tag, height, width, channels, bytes));
}

void TensorBoardWriter::text(int64_t step, const std::string& tag, const std::string& text) {
  write_event(text_event(now_seconds(), step, tag, text));
}

}  // namespace ddpm
