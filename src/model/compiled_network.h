// A model compiled ahead of time by AOTInductor (`ddpm compile`, scripts/compile_package.py): a
// .pt2 package of generated kernels (C++/OpenMP for the CPU, Triton for CUDA) with our metadata
// (the model's config, the precision and device it was compiled for, the largest batch, the
// torch version, where its weights came from). Loading and running it needs no Python.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "base/precision.h"
#include "config/config.h"
#include "model/network.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace ddpm {

// The format of our metadata; a package of another format is refused.
inline constexpr int kPackageFormat = 1;

// What a package says of itself (its metadata), read without loading its code.
struct PackageInfo {
  std::filesystem::path path;
  Config config;                  // the model's config; sample.precision is the package's
  Precision precision = Precision::fp32;
  std::string device;             // "cpu" or "cuda"
  int64_t max_batch = 0;          // images per network call, at most
  std::string torch_version;      // torch.__version__ of the compiling Python
  std::string cpu_isa;            // the instruction sets the CPU kernels use (AOTInductor's)
  std::string source;             // the checkpoint it was compiled from, its step, which weights
  int64_t step = 0;
  bool ema = true;
  std::map<std::string, std::string> metadata;  // all of it, as stored
};

// True for a path that names a package (a .pt2 file), whether or not it exists.
bool is_package_path(const std::filesystem::path& path);

// The package's metadata. Throws ddpm::Error (usage) naming the file when it is missing, is not
// an AOTInductor package (corrupt, truncated, another format), or is one that `ddpm compile`
// did not make.
PackageInfo read_package_info(const std::filesystem::path& path);

// Throws ddpm::Error (usage), with the reason and what to do, when this build cannot run the
// package on `device`: compiled for another device type, another torch version than the
// LibTorch linked here, or instruction sets this CPU lacks.
void check_package_runs_here(const PackageInfo& info, torch::Device device);

// The package's network, loaded on `device` after check_package_runs_here. forward() takes
// what Network says, converts x and t to float32, and refuses (ddpm::Error, usage) a batch over
// max_batch() or labels for an unconditional model.
class CompiledNetwork final : public Network {
 public:
  CompiledNetwork(const PackageInfo& info, torch::Device device);
  ~CompiledNetwork() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const torch::Tensor& labels = {}) override;
  int64_t no_class() const override { return info_.config.model.num_classes; }
  bool takes_autocast() const override { return false; }
  int64_t max_batch() const override { return info_.max_batch; }
  const PackageInfo& info() const { return info_; }

 private:
  PackageInfo info_;
  torch::Device device_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

}  // namespace ddpm
