// Loading weights from a checkpoint, a run directory or a diffusers folder; see model_source.h.
#include "interop/model_source.h"

#include "ddpm/error.h"
#include "interop/diffusers_folder.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

ModelSource from_checkpoint(const fs::path& file) {
  TrainingState state = load_checkpoint(file);
  ModelSource source;
  source.path = file;
  source.config = std::move(state.config);
  source.model = std::move(state.model);
  source.ema = std::move(state.ema);
  source.step = state.step;
  source.origin = state.source;
  return source;
}

ModelSource from_diffusers(const fs::path& folder) {
  DiffusersModel model = read_diffusers_folder(folder);
  ModelSource source;
  source.path = folder;
  source.diffusers = true;
  source.config = std::move(model.config);
  source.model = model.weights;
  source.ema = std::move(model.weights);
  std::string files;
  for (const auto& file : model.weight_files) {
    files += (files.empty() ? "" : ", ") + file.filename().string();
  }
  source.origin = "diffusers folder '" + fs::absolute(folder).lexically_normal().string() + "' (" +
                  (model.layout == DiffusersLayout::pipeline ? "pipeline" : "flat") +
                  " layout, " + files + ")";
  source.warnings = std::move(model.warnings);
  return source;
}

void require_exists(const fs::path& path) {
  std::error_code error;
  if (!fs::exists(path, error)) {
    throw Error(ErrorKind::runtime, "'" + path.string() +
                                        "' does not exist; pass a checkpoint file, a run "
                                        "directory or a diffusers model folder");
  }
}

}  // namespace

ModelSource load_model_source(const fs::path& path) {
  require_exists(path);
  std::error_code error;
  if (is_package_path(path) && fs::is_regular_file(path, error)) {
    const PackageInfo info = read_package_info(path);
    throw Error(ErrorKind::usage,
                "'" + path.string() + "' is a compiled package (ddpm compile): it samples "
                "(ddpm sample, ddpm bench, ddpm nll) but holds no weights to train, export or "
                "read a config from; pass the checkpoint it was compiled from: " + info.source);
  }
  if (fs::is_directory(path, error)) {
    if (fs::exists(path / "checkpoints", error)) return from_checkpoint(resolve_checkpoint(path));
    if (fs::exists(path / "config.json", error) || fs::exists(path / "unet", error) ||
        fs::exists(path / "model_index.json", error)) {
      return from_diffusers(path);
    }
    throw Error(ErrorKind::runtime,
                "'" + path.string() + "' is neither a run directory (it has no checkpoints/) nor "
                "a diffusers model folder (it has no config.json or unet/config.json)");
  }
  const std::string extension = path.extension().string();
  if (extension == ".safetensors" || extension == ".bin" || extension == ".json") {
    throw Error(ErrorKind::usage, "'" + path.string() +
                                      "' is one file of a diffusers model; pass the folder that "
                                      "holds it and its config.json instead");
  }
  return from_checkpoint(path);
}

ModelSource load_sampling_source(const fs::path& path) {
  require_exists(path);
  std::error_code error;
  if (!is_package_path(path) || !fs::is_regular_file(path, error)) return load_model_source(path);
  ModelSource source;
  source.path = path;
  source.package = read_package_info(path);
  source.config = source.package->config;
  source.step = source.package->step;
  source.origin = "package '" + fs::absolute(path).lexically_normal().string() +
                  "' compiled from " + source.package->source;
  return source;
}

TrainingState imported_checkpoint(const ModelSource& source) {
  TrainingState state;
  state.step = 0;
  state.config = source.config;
  state.model = source.ema;
  state.ema = source.ema;
  state.source = source.origin.empty() ? source.path.string() : source.origin;
  return state;
}

}  // namespace ddpm
