// Test helpers; see test_support.h.
#include "test_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "ddpm/error.h"
#include "formats/image_io.h"

namespace ddpm::testing {

TempDir::TempDir(const std::string& name)
    : path_(std::filesystem::temp_directory_path() /
            ("ddpm_" + name + "_" + std::to_string(::getpid()))) {
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code error;
  std::filesystem::remove_all(path_, error);
}

void write_image_folder(const std::filesystem::path& folder, int count, int height, int width) {
  std::filesystem::create_directories(folder);
  for (int index = 0; index < count; ++index) {
    Image image;
    image.height = height;
    image.width = width;
    image.channels = 1;
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        const double value = std::sin(0.7 * x + 0.3 * index) * std::cos(0.5 * y - 0.2 * index);
        image.pixels.push_back(static_cast<uint8_t>(std::lround(127.5 + 127.0 * value)));
      }
    }
    char name[32];
    std::snprintf(name, sizeof name, "image_%03d.png", index);
    write_png(folder / name, image);
  }
}

std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> temporary_files(const std::filesystem::path& folder) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp.") != std::string::npos) found.push_back(entry.path().string());
  }
  return found;
}

void write_feature_net(const std::filesystem::path& path, const std::string& forward_source,
                       FeatureNetInput input, bool declare_input) {
  torch::jit::Module module("FeatureNetFixture");
  if (declare_input) {
    module.register_attribute("input_channels", c10::IntType::get(), input.channels);
    module.register_attribute("input_height", c10::IntType::get(), input.height);
    module.register_attribute("input_width", c10::IntType::get(), input.width);
  }
  module.define(forward_source);
  module.save(path.string());
}

CommandResult run_ddpm(const std::string& arguments) {
  return run_command(std::string(DDPM_BINARY) + " " + arguments);
}

CommandResult run_command(const std::string& shell_command) {
  const std::string command = shell_command + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  CommandResult result;
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  while (size_t read = std::fread(buffer.data(), 1, buffer.size(), pipe)) {
    result.output.append(buffer.data(), read);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

int free_port() {
  const int socket = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof address;
  int port = 0;
  if (socket >= 0 && ::bind(socket, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(socket, reinterpret_cast<sockaddr*>(&address), &size) == 0) {
    port = ntohs(address.sin_port);
  }
  if (socket >= 0) ::close(socket);
  if (port == 0) throw std::runtime_error("free_port: cannot bind a socket on 127.0.0.1");
  return port;
}

ModelConfig small_model_config() {
  ModelConfig model;
  model.base_channels = 16;
  model.channel_mult = {1, 2};
  model.num_res_blocks = 1;
  model.attention_resolutions = {8};
  model.norm_groups = 8;
  model.dropout = 0.0;
  return model;
}

DataConfig image_config(int channels, int height, int width) {
  DataConfig data;
  data.channels = channels;
  data.height = height;
  data.width = width;
  return data;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

std::string small_train_config(const std::filesystem::path& data, int steps) {
  return R"({
  "data": {"path": ")" + data.string() + R"(", "image_size": 8, "channels": 1, "workers": 2},
  "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
            "attention_resolutions": [4], "norm_groups": 8, "dropout": 0.1},
  "diffusion": {"timesteps": 100},
  "train": {"batch_size": 4, "steps": )" + std::to_string(steps) + R"(, "lr": 0.001,
            "warmup_steps": 2, "ema_decay": 0.9, "log_every": 1, "checkpoint_every": 3,
            "sample_every": 0, "keep_checkpoints": 2, "device": "cpu", "seed": 3},
  "sample": {"sampler": "ddim", "steps": 5, "num_images": 4, "batch_size": 4}
})";
}

}  // namespace ddpm::testing
