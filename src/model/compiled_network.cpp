// AOTInductor packages of our model; see compiled_network.h.
#include "model/compiled_network.h"

#include <algorithm>
#include <cctype>
#include <sstream>

#include <ATen/cpu/Utils.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/version.h>

#include "config/config_json.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

std::string quoted(const std::filesystem::path& path) { return "'" + path.string() + "'"; }

const std::string& entry(const std::map<std::string, std::string>& metadata,
                         const std::string& key, const std::filesystem::path& path) {
  const auto found = metadata.find(key);
  if (found == metadata.end()) {
    throw Error(ErrorKind::usage, quoted(path) + ": the package's metadata lacks " + key +
                                      "; compile the model again with ddpm compile");
  }
  return found->second;
}

int64_t whole_number(const std::string& text, const std::string& key,
                     const std::filesystem::path& path) {
  size_t used = 0;
  int64_t value = -1;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 0) {
    throw Error(ErrorKind::usage, quoted(path) + ": the package's " + key + " is '" + text +
                                      "', not a number; compile the model again with ddpm compile");
  }
  return value;
}

// "2.14.1+cu130" -> "2.14.1"
std::string release(const std::string& version) { return version.substr(0, version.find('+')); }

std::string linked_torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// The instruction sets AOTInductor names in AOTI_CPU_ISA that this CPU lacks.
std::string missing_instruction_sets(const std::string& isa) {
  static const std::map<std::string, std::string> capability = {
      {"AVX2", "avx2"},          {"AVX512", "avx512_f"},      {"AVX512_VNNI", "avx512_vnni"},
      {"AVX512_BF16", "avx512_bf16"}, {"AMX_TILE", "amx_tile"}, {"AVX512_FP16", "avx512_fp16"}};
  const auto here = at::cpu::get_cpu_capabilities();
  std::istringstream words(isa);
  std::string missing;
  for (std::string word; words >> word;) {
    const auto name = capability.find(word);
    if (name == capability.end()) continue;
    const auto found = here.find(name->second);
    if (found == here.end() || !found->second.isBool() || !found->second.toBool()) {
      missing += (missing.empty() ? "" : " ") + word;
    }
  }
  return missing;
}

}  // namespace

bool is_package_path(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension == ".pt2";
}

PackageInfo read_package_info(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    throw Error(ErrorKind::usage, quoted(path) + " does not exist or is not a file; make a "
                                                 "package with ddpm compile --checkpoint C --out " +
                                      path.string());
  }
  PackageInfo info;
  info.path = path;
  try {
    const auto metadata = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(
        path.string(), "model");
    info.metadata.insert(metadata.begin(), metadata.end());
  } catch (const std::exception& failure) {
    std::string why = failure.what();
    why = why.substr(0, why.find('\n'));
    throw Error(ErrorKind::usage, quoted(path) + " is not a readable AOTInductor package (" +
                                      why + "): it may be truncated or another kind of file; "
                                      "compile the model again with ddpm compile");
  }
  const auto format = info.metadata.find("ddpm.format");
  if (format == info.metadata.end()) {
    throw Error(ErrorKind::usage,
                quoted(path) + " is an AOTInductor package that ddpm compile did not make (its "
                               "metadata has no ddpm.format): it lacks our model's config and "
                               "schedule; compile a ddpm checkpoint with ddpm compile");
  }
  if (format->second != std::to_string(kPackageFormat)) {
    throw Error(ErrorKind::usage, quoted(path) + " has package format " + format->second +
                                      "; this ddpm reads format " +
                                      std::to_string(kPackageFormat) +
                                      ": compile it again with this ddpm");
  }
  try {
    const std::string& text = entry(info.metadata, "ddpm.config", path);
    info.config = config_from_json(nlohmann::json::parse(text));
  } catch (const Error& failure) {
    throw Error(ErrorKind::usage, quoted(path) + ": the package's config is invalid (" +
                                      failure.what() + "); compile the model again");
  } catch (const nlohmann::json::exception& failure) {
    throw Error(ErrorKind::usage, quoted(path) + ": the package's config is not JSON (" +
                                      failure.what() + "); compile the model again");
  }
  info.precision =
      precision_from_name(entry(info.metadata, "ddpm.precision", path), "ddpm.precision");
  info.device = entry(info.metadata, "AOTI_DEVICE_KEY", path);
  info.max_batch = whole_number(entry(info.metadata, "ddpm.max_batch", path), "max_batch", path);
  info.torch_version = entry(info.metadata, "ddpm.torch_version", path);
  const auto isa = info.metadata.find("AOTI_CPU_ISA");
  if (isa != info.metadata.end()) info.cpu_isa = isa->second;
  info.source = entry(info.metadata, "ddpm.source", path);
  info.step = whole_number(entry(info.metadata, "ddpm.step", path), "step", path);
  info.ema = entry(info.metadata, "ddpm.weights", path) != "model";
  return info;
}

void check_package_runs_here(const PackageInfo& info, torch::Device device) {
  const std::string here = device.is_cuda() ? "cuda" : device.is_cpu() ? "cpu" : device.str();
  if (info.device != here) {
    throw Error(ErrorKind::usage,
                quoted(info.path) + " was compiled for " + info.device + "; this run samples on " +
                    here + ": sample it with --device " + info.device +
                    ", or compile the checkpoint again with ddpm compile --device " + here);
  }
  if (release(info.torch_version) != linked_torch_version()) {
    throw Error(ErrorKind::usage,
                quoted(info.path) + " was compiled with torch " + info.torch_version +
                    "; this ddpm runs LibTorch " + linked_torch_version() +
                    ", whose runtime may not load it: compile the checkpoint again with this "
                    "build's ddpm compile");
  }
  if (info.device == "cpu") {
    const std::string missing = missing_instruction_sets(info.cpu_isa);
    if (!missing.empty()) {
      throw Error(ErrorKind::usage,
                  quoted(info.path) + " was compiled for a CPU with " + info.cpu_isa +
                      "; this CPU lacks " + missing +
                      ": compile the checkpoint on this kind of machine");
    }
  }
}

CompiledNetwork::CompiledNetwork(const PackageInfo& info, torch::Device device)
    : info_(info), device_(device) {
  check_package_runs_here(info_, device_);
  try {
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
        info_.path.string(), "model", /*run_single_threaded=*/false, /*num_runners=*/1,
        device_.has_index() ? device_.index() : c10::DeviceIndex(-1));
  } catch (const std::exception& failure) {
    std::string why = failure.what();
    why = why.substr(0, why.find('\n'));
    throw Error(ErrorKind::runtime, quoted(info_.path) + ": loading the compiled model failed (" +
                                        why + "); compile the checkpoint again with ddpm compile");
  }
}

CompiledNetwork::~CompiledNetwork() = default;

torch::Tensor CompiledNetwork::forward(const torch::Tensor& x, const torch::Tensor& t,
                                       const torch::Tensor& labels) {
  const DataConfig& data = info_.config.data;
  TORCH_CHECK(x.dim() == 4 && x.size(1) == data.channels && x.size(2) == data.height &&
                  x.size(3) == data.width,
              "the compiled model expects images of shape [B, ", data.channels, ", ",
              data.height, ", ", data.width, "], got ", x.sizes());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), "timesteps must have shape [", x.size(0),
              "], got ", t.sizes());
  const int64_t batch = x.size(0);
  if (batch > info_.max_batch) {
    throw Error(ErrorKind::usage, quoted(info_.path) + " takes at most " +
                                      std::to_string(info_.max_batch) +
                                      " images per call (ddpm compile --max-batch); got " +
                                      std::to_string(batch));
  }
  std::vector<torch::Tensor> inputs = {
      x.to(device_, torch::kFloat32).contiguous(), t.to(device_, torch::kFloat32).contiguous()};
  const int64_t classes = info_.config.model.num_classes;
  if (classes > 0) {
    inputs.push_back(labels.defined()
                         ? labels.to(device_, torch::kLong).contiguous()
                         : torch::full({batch}, classes, torch::TensorOptions()
                                                             .dtype(torch::kLong)
                                                             .device(device_)));
  } else {
    TORCH_CHECK(!labels.defined(), "this model is unconditional (model.num_classes 0); it takes "
                                   "no class labels");
  }
  return loader_->run(inputs).at(0);
}

}  // namespace ddpm
