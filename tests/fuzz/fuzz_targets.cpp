// The fuzz targets of fuzz_targets.h. Parsers that take a path read the input from a memory
// file (memfd), so each runs exactly as it does on a file on disk.
#include "fuzz_targets.h"

#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config_json.h"
#include "ddpm/error.h"
#include "eval/feature_stats.h"
#include "formats/checkpoint.h"
#include "formats/diffusers_json.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"
#include "formats/png.h"
#include "formats/safetensors.h"
#include "formats/safetensors_header.h"
#include "interop/diffusers_config.h"

namespace ddpm::fuzz {
namespace {

namespace fs = std::filesystem;

// The input as a file, /proc/self/fd/N, for as long as the object lives.
class InputFile {
 public:
  explicit InputFile(std::string_view bytes) : descriptor_(::memfd_create("fuzz_input", 0)) {
    if (descriptor_ < 0) throw std::runtime_error("memfd_create failed");
    size_t written = 0;
    while (written < bytes.size()) {
      const ssize_t n = ::write(descriptor_, bytes.data() + written, bytes.size() - written);
      if (n <= 0) throw std::runtime_error("writing the memory file failed");
      written += static_cast<size_t>(n);
    }
  }
  ~InputFile() { ::close(descriptor_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  fs::path path() const { return "/proc/self/fd/" + std::to_string(descriptor_); }

 private:
  int descriptor_;
};

void check(bool property, const char* what) {
  if (!property) throw std::logic_error(std::string("fuzz property broken: ") + what);
}

// Any channel count the callers ask for, picked by the input's length so that the bytes of the
// file stay the fuzzer's own; a decoded image of up to a megapixel is also resized, as the data
// loader does (larger ones would only slow the fuzzer down: the resize is the same code).
void image(std::string_view input) {
  try {
    parse_png_text(input, "fuzz.png");
  } catch (const Error&) {
  }
  constexpr int kChannels[] = {1, 3, 4};
  const int channels = kChannels[input.size() % 3];
  const Image decoded = decode_image(input, channels, "fuzz.png");
  check(decoded.channels == channels && decoded.height > 0 && decoded.width > 0 &&
            decoded.height <= kMaxImageSide && decoded.width <= kMaxImageSide &&
            decoded.pixels.size() == size_t(decoded.height) * decoded.width * channels,
        "a decoded image has the size its header states, within the limits");
  if (decoded.pixels.size() <= size_t{1} << 20) resize_and_crop(decoded, 5, 7);
}

// `ddpm train --config FILE --set ...`: the file is the input up to its first NUL byte, each
// NUL-separated piece after it one --set override.
void config(std::string_view input) {
  const size_t end = input.find('\0');
  const InputFile file(input.substr(0, end));
  std::vector<std::string> overrides;
  for (size_t at = end; at != std::string_view::npos;) {
    const size_t next = input.find('\0', at + 1);
    overrides.emplace_back(input.substr(at + 1, next - at - 1));
    at = next;
  }
  load_config(file.path(), overrides);
}

void checkpoint(std::string_view input) { load_checkpoint(InputFile(input).path()); }

void feature_stats(std::string_view input) {
  const FeatureStats stats = load_feature_stats(InputFile(input).path());
  check(stats.covariance.size(0) == stats.feature_dim(), "the stats' shapes fit together");
}

void checkpoint_pointer(std::string_view input) {
  const std::string name = checkpoint_name_from_pointer(input, "run/checkpoints/latest");
  check(name.starts_with("step_") && name.ends_with(".pt") &&
            name.find('/') == std::string::npos && fs::path(name).filename() == name,
        "a pointer names a step file in its own folder");
}

// The header checks alone, and what the reader relies on them for: every tensor inside the file,
// sized by its dtype and shape.
void safetensors_header(std::string_view file) {
  const uint64_t length = safetensors_header_length(file, file.size(), "fuzz");
  const SafetensorsHeader header =
      parse_safetensors_header(file.substr(8, length), file.size() - 8 - length, "fuzz");
  for (const auto& tensor : header.tensors) {
    check(header.data_start + tensor.end <= file.size(), "a tensor lies inside the file");
    uint64_t elements = 1;
    for (const int64_t dimension : tensor.shape) elements *= static_cast<uint64_t>(dimension);
    check(elements * safetensors_dtype_size(tensor.dtype) == tensor.end - tensor.begin,
          "a tensor's bytes match its dtype and shape");
  }
}

void safetensors_reader(std::string_view input) { read_safetensors(InputFile(input).path()); }

// A UNet2DModel config.json, then after a NUL byte (if any) its scheduler_config.json, to our
// config and back, as `ddpm import` and `ddpm export` do.
void diffusers_config(std::string_view input) {
  const size_t end = input.find('\0');
  const nlohmann::json unet = parse_diffusers_json(input.substr(0, end), "fuzz/config.json");
  std::optional<nlohmann::json> scheduler;
  if (end != std::string_view::npos) {
    scheduler = parse_diffusers_json(input.substr(end + 1), "fuzz/scheduler_config.json");
  }
  std::vector<std::string> warnings;
  const Config config =
      config_from_diffusers(unet, scheduler ? &*scheduler : nullptr, "fuzz", warnings);
  diffusers_unet_config(config);
  diffusers_scheduler_config(config, warnings);
}

}  // namespace

const std::vector<FuzzTarget>& fuzz_targets() {
  static const std::vector<FuzzTarget> targets = {
      {"image", image, {"tests/data/fuzz/image"}},
      {"config", config, {"tests/data/fuzz/config", "configs"}},
      {"checkpoint", checkpoint, {"tests/data/fuzz/checkpoint"}},
      {"feature_stats", feature_stats, {"tests/data/fuzz/feature_stats"}},
      {"checkpoint_pointer", checkpoint_pointer, {"tests/data/fuzz/checkpoint_pointer"}},
      {"safetensors_header", safetensors_header, {"tests/data/safetensors"}},
      // Model weights are floats: a file of integer tensors is refused by name and dtype.
      {"safetensors_reader",
       safetensors_reader,
       {"tests/data/safetensors"},
       {"valid_scalar_empty_int.safetensors"}},
      {"diffusers_config", diffusers_config, {"tests/data/fuzz/diffusers_config"}},
  };
  return targets;
}

const FuzzTarget& fuzz_target(std::string_view name) {
  for (const FuzzTarget& target : fuzz_targets()) {
    if (target.name == name) return target;
  }
  throw std::invalid_argument("no fuzz target '" + std::string(name) + "'");
}

}  // namespace ddpm::fuzz
