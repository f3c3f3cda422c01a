// `ddpm compile`: a checkpoint to an AOTInductor package (.pt2) that `ddpm sample`, `ddpm bench`
// and ddpm::Pipeline load without Python. The compiling itself is torch's (torch.export and
// AOTInductor, in Python: scripts/compile_package.py, built into this binary); this command
// checks everything first, hands the weights and config over, runs torch's Python, checks the
// package against the eager network and only then puts it at --out.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "base/device.h"
#include "base/log.h"
#include "base/precision.h"
#include "child_process.h"
#include "commands.h"
#include "common.h"
#include "compile_scripts.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "formats/weights.h"
#include "interop/model_source.h"
#include "model/compiled_network.h"

#ifndef DDPM_BUILD_PYTHON
#define DDPM_BUILD_PYTHON ""
#endif

namespace ddpm::cli {
namespace {

namespace fs = std::filesystem;

std::string linked_torch() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// torch.__version__ of `python`; "" when it cannot import torch; "no C++ headers" when its torch
// lacks them (AOTInductor compiles against them: a slimmed install, like the Docker runtime's).
std::string torch_version_of(const std::string& python) {
  const ChildLine line = first_output_line(
      python, {"-c", "import os, torch; print(torch.__version__ if os.path.isdir(os.path.join("
                     "os.path.dirname(torch.__file__), 'include', 'torch')) else "
                     "'without its C++ headers')"});
  return line.ok ? line.line : "";
}

std::string describe_torch(const std::string& version) {
  if (version.empty()) return "cannot import torch";
  if (version.starts_with("without")) {
    return "its torch is installed without its C++ headers (a slimmed install, like the Docker "
           "runtime stage's; compile in the build stage)";
  }
  return "has torch " + version;
}

// The Python to compile with: --python, $DDPM_PYTHON, the one this ddpm was built with, the
// set-up's .venv beside the build folder, python3; the first whose torch is the LibTorch linked
// here (a named one must be).
std::string find_torch_python(const cxxopts::ParseResult& arguments) {
  const std::string wanted = linked_torch();
  std::vector<std::pair<std::string, std::string>> named;
  if (arguments.count("python")) {
    named.emplace_back(arguments["python"].as<std::string>(), "--python");
  }
  if (const char* variable = std::getenv("DDPM_PYTHON"); variable && *variable) {
    named.emplace_back(variable, "DDPM_PYTHON");
  }
  for (const auto& [python, where] : named) {
    const std::string version = torch_version_of(python);
    if (version.substr(0, version.find('+')) == wanted) return python;
    throw Error(ErrorKind::usage, where + " " + python + ": " + describe_torch(version) +
                                      "; ddpm compile needs torch " + wanted +
                                      " (the LibTorch this ddpm links) with its C++ headers");
  }
  std::vector<std::string> candidates = {DDPM_BUILD_PYTHON};
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    candidates.push_back((self.parent_path().parent_path() / ".venv/bin/python").string());
  }
  candidates.push_back("python3");
  std::string tried;
  for (const std::string& python : candidates) {
    if (python.empty()) continue;
    if (python.find('/') != std::string::npos && !fs::exists(python, error)) continue;
    const std::string version = torch_version_of(python);
    if (version.substr(0, version.find('+')) == wanted) return python;
    tried += (tried.empty() ? "" : ", ") + python + " (" + describe_torch(version) + ")";
  }
  throw Error(ErrorKind::usage,
              "ddpm compile runs torch's Python (torch.export and AOTInductor) with torch " +
                  wanted + ", the LibTorch this ddpm links; found none (tried " + tried +
                  "). scripts/setup.sh makes one in .venv; or pass --python PATH or set "
                  "DDPM_PYTHON");
}

struct CompileRequest {
  fs::path out;
  std::string device = "cpu";
  Precision precision = Precision::fp32;
  int64_t max_batch = 64;
  bool ema = true;
};

CompileRequest compile_request(const cxxopts::ParseResult& arguments) {
  if (!arguments.count("checkpoint") || !arguments.count("out")) {
    throw Error(ErrorKind::usage, "ddpm compile needs --checkpoint FILE_OR_RUN_DIR and "
                                  "--out FILE.pt2");
  }
  CompileRequest request;
  request.out = arguments["out"].as<std::string>();
  if (!is_package_path(request.out)) {
    throw Error(ErrorKind::usage, "--out " + request.out.string() +
                                      ": a package is a .pt2 file; name it model.pt2 or so");
  }
  request.device = arguments["device"].as<std::string>();
  if (request.device != "cpu" && request.device != "cuda") {
    throw Error(ErrorKind::usage, "--device must be cpu or cuda, got '" + request.device + "'");
  }
  if (request.device == "cuda") resolve_device("cuda");  // refuses a machine without CUDA
  request.precision = precision_from_name(arguments["precision"].as<std::string>(),
                                          "--precision");
  request.max_batch = arguments["max-batch"].as<int>();
  if (request.max_batch < 1 || request.max_batch > 65536) {
    throw Error(ErrorKind::usage, "--max-batch must be in [1, 65536], got " +
                                      std::to_string(request.max_batch));
  }
  const std::string weights = arguments["weights"].as<std::string>();
  if (weights != "ema" && weights != "model") {
    throw Error(ErrorKind::usage, "--weights must be ema or model, got '" + weights + "'");
  }
  request.ema = weights == "ema";
  refuse_existing(request.out, arguments.count("overwrite") > 0);
  return request;
}

// A folder beside --out for what the Python side reads and writes; removed on every exit.
class WorkFolder {
 public:
  explicit WorkFolder(const fs::path& out)
      : path_(fs::absolute(out).parent_path() /
              ("." + out.filename().string() + ".compiling." + std::to_string(getpid()))) {
    std::error_code error;
    fs::remove_all(path_, error);
    if (!fs::create_directories(path_, error)) {
      throw Error(ErrorKind::runtime, "cannot create " + path_.string() + " (" +
                                          error.message() + "); check the folder of --out");
    }
  }
  ~WorkFolder() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  WorkFolder(const WorkFolder&) = delete;
  WorkFolder& operator=(const WorkFolder&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_text(const fs::path& file, std::string_view text) {
  std::ofstream stream(file, std::ios::binary);
  stream << text;
  stream.close();
  if (!stream) {
    throw Error(ErrorKind::runtime, "cannot write " + file.string() + "; is the disk full?");
  }
}

// The package's output against the eager UNet's on one batch: the largest |difference|.
double compare_with_eager(const PackageInfo& info, UNet& eager, torch::Device device) {
  CompiledNetwork compiled(info, device);
  const DataConfig& data = info.config.data;
  const int64_t batch = std::min<int64_t>(2, info.max_batch);
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({batch, data.channels, data.height, data.width});
  const double T = info.config.diffusion.timesteps;
  const torch::Tensor t = torch::tensor(std::vector<float>{float(0.9 * T), float(0.1 * T)})
                              .narrow(0, 0, batch);
  torch::Tensor labels;
  if (info.config.model.num_classes > 0) {
    labels = torch::tensor(std::vector<int64_t>{0, compiled.no_class()}).narrow(0, 0, batch);
  }
  torch::InferenceMode inference;
  eager->to(device);
  eager->eval();
  const torch::Tensor expected =
      eager->forward(x.to(device), t.to(device), labels.defined() ? labels.to(device) : labels);
  const torch::Tensor got = compiled.forward(x, t, labels);
  return (got.cpu() - expected.cpu()).abs().max().item<double>();
}

}  // namespace

int run_compile(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm compile",
      "Compiles a checkpoint's network ahead of time with torch.export and AOTInductor into a "
      ".pt2 package (generated C++/OpenMP kernels on the CPU, Triton on CUDA) that ddpm sample, "
      "ddpm bench and ddpm::Pipeline load like a checkpoint, without Python. The package holds "
      "the model's config and sample section; it runs on the device type, precision and torch "
      "version it was compiled for (and, on the CPU, on CPUs with this one's instruction "
      "sets). Compiling needs torch's Python (the set-up's .venv); sampling does not.");
  options.add_options()("checkpoint",
                        "checkpoint file, run directory (its latest) or diffusers model folder",
                        cxxopts::value<std::string>())(
      "o,out", "the package to write (FILE.pt2)", cxxopts::value<std::string>())(
      "device", "cpu or cuda: where the package runs",
      cxxopts::value<std::string>()->default_value("cpu"))(
      "precision", "fp32, bf16 or fp16: what the package computes in (takes and returns fp32)",
      cxxopts::value<std::string>()->default_value("fp32"))(
      "max-batch", "the most images one network call takes (guidance doubles a batch)",
      cxxopts::value<int>()->default_value("64"))(
      "weights", "ema or model (the raw weights)",
      cxxopts::value<std::string>()->default_value("ema"))(
      "python", "torch's Python to compile with (default: $DDPM_PYTHON, the build's, .venv)",
      cxxopts::value<std::string>())("overwrite", "replace --out if it exists");
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  const CompileRequest request = compile_request(arguments);
  const ModelSource source = load_model_source(arguments["checkpoint"].as<std::string>());
  for (const auto& warning : source.warnings) log::warn(warning);
  UNet model(source.config.model, source.config.data);
  load_state_dict(*model, request.ema ? source.ema : source.model,
                  "'" + source.path.string() + "'");
  const std::string python = find_torch_python(arguments);

  make_folder_of(request.out);
  const WorkFolder work(request.out);
  Config config = source.config;
  config.sample.precision = request.precision;
  // The package's default batch fits it, guidance (which doubles a batch) included.
  const bool doubled = config.sample.guidance != 1.0 && config.sample.guidance != 0.0;
  config.sample.batch_size = static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>(config.sample.batch_size, request.max_batch / (doubled ? 2 : 1))));
  save_weights(*model, work.path() / "weights.pt");
  write_text(work.path() / "config.json", config_to_json(config).dump(2));
  const nlohmann::json metadata = {
      {"ddpm.format", std::to_string(kPackageFormat)},
      {"ddpm.config", config_to_json(config).dump()},
      {"ddpm.precision", precision_name(request.precision)},
      {"ddpm.max_batch", std::to_string(request.max_batch)},
      {"ddpm.source", fs::absolute(source.path).lexically_normal().string()},
      {"ddpm.step", std::to_string(source.step)},
      {"ddpm.weights", request.ema || source.diffusers ? "ema" : "model"}};
  write_text(work.path() / "metadata.json", metadata.dump());
  write_text(work.path() / "compile_package.py", kCompilePackageScript);
  write_text(work.path() / "ddpm_unet.py", kUNetScript);
  const fs::path package = work.path() / "model.pt2";

  log::info("compiling " + source.path.string() + " (step " + std::to_string(source.step) +
            ", " + std::to_string(model->parameter_count()) + " parameters) for " +
            request.device + " in " + precision_name(request.precision) + ", batches of 1 to " +
            std::to_string(request.max_batch) + ", with " + python +
            " (torch.export + AOTInductor: minutes on a CPU)");
  const auto started = std::chrono::steady_clock::now();
  const ChildResult result = run_child(
      python, {(work.path() / "compile_package.py").string(), "--weights",
               (work.path() / "weights.pt").string(), "--config",
               (work.path() / "config.json").string(), "--metadata",
               (work.path() / "metadata.json").string(), "--out", package.string(), "--device",
               request.device, "--precision", precision_name(request.precision), "--max-batch",
               std::to_string(request.max_batch), "--threads",
               std::to_string(torch::get_num_threads())});
  if (result.interrupted) {
    throw Error(ErrorKind::interrupted, "ddpm compile interrupted; nothing was written to " +
                                            request.out.string());
  }
  if (result.exit_code != 0) {
    throw Error(ErrorKind::runtime,
                "compiling failed (" + python +
                    (result.signal ? " died of signal " + std::to_string(result.signal)
                                   : " exited with " + std::to_string(result.exit_code)) +
                    ", its messages above); nothing was written to " + request.out.string());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  PackageInfo info = read_package_info(package);
  const torch::Device device = resolve_device(request.device);
  const double difference = compare_with_eager(info, model, device);
  const double tolerance = request.precision == Precision::fp32 ? 1e-3 : 0.25;
  if (!(difference <= tolerance)) {
    throw Error(ErrorKind::runtime,
                "the compiled package's output differs from the checkpoint's network by " +
                    std::to_string(difference) + " (more than " + std::to_string(tolerance) +
                    ") on a test batch; nothing was written to " + request.out.string() +
                    ". Please report this with the checkpoint's config");
  }
  std::error_code error;
  fs::rename(package, request.out, error);
  if (error) {
    throw Error(ErrorKind::runtime, "cannot move the package to " + request.out.string() + " (" +
                                        error.message() + ")");
  }
  log::info("wrote " + request.out.string() + " (" +
            std::to_string(fs::file_size(request.out) / (1024 * 1024)) + " MiB) in " +
            std::to_string(static_cast<int>(seconds)) +
            " s; against the eager network on a test batch: max |difference| " +
            std::to_string(difference) + ". Sample it: ddpm sample --checkpoint " +
            request.out.string());
  return 0;
}

}  // namespace ddpm::cli
