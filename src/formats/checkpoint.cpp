// Checkpoint files and the run directory's checkpoints/ folder; see checkpoint.h.
#include "formats/checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "base/atomic_file.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "formats/safetensors_header.h"  // printable_name
#include "formats/weights.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

Error checkpoint_error(const fs::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "checkpoint '" + path.string() + "': " + reason);
}

c10::IValue to_ivalue(const TensorMap& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : tensors) {
    dict.insert(name, tensor.detach().to(torch::kCPU).contiguous());
  }
  return dict;
}

TensorMap tensor_map(const c10::impl::GenericDict& dict, const std::string& field,
                     const fs::path& path) {
  const auto found = dict.find(field);
  if (found == dict.end() || !found->value().isGenericDict()) {
    throw checkpoint_error(path, "has no '" + field + "' dict of tensors");
  }
  TensorMap tensors;
  for (const auto& entry : found->value().toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) {
      throw checkpoint_error(path, "'" + field + "' holds an entry that is not name -> tensor");
    }
    tensors[entry.key().toStringRef()] = entry.value().toTensor();
  }
  return tensors;
}

int64_t integer_field(const c10::impl::GenericDict& dict, const std::string& field,
                      const fs::path& path) {
  const auto found = dict.find(field);
  if (found == dict.end() || !found->value().isInt()) {
    throw checkpoint_error(path, "has no integer '" + field + "'");
  }
  return found->value().toInt();
}

// An optional number (files written before the field existed lack it): `fallback` when absent.
double optional_number(const c10::impl::GenericDict& dict, const std::string& field,
                       double fallback, const fs::path& path) {
  const auto found = dict.find(field);
  if (found == dict.end()) return fallback;
  if (found->value().isDouble()) return found->value().toDouble();
  if (found->value().isInt()) return static_cast<double>(found->value().toInt());
  throw checkpoint_error(path, "has a '" + field + "' that is not a number");
}

std::string step_file_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%09lld.pt", static_cast<long long>(step));
  return name;
}

}  // namespace

void save_checkpoint(const fs::path& path, const TrainingState& state) {
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("format_version", kCheckpointFormatVersion);
  dict.insert("step", state.step);
  dict.insert("config", config_to_json(state.config).dump());
  dict.insert("model", to_ivalue(state.model));
  dict.insert("ema", to_ivalue(state.ema));
  dict.insert("optimizer", to_ivalue(state.optimizer));
  dict.insert("rng", to_ivalue(state.rng));
  dict.insert("loader_epoch", state.loader_epoch);
  dict.insert("loader_batch", state.loader_batch);
  if (!state.source.empty()) dict.insert("source", state.source);
  dict.insert("skipped_steps", state.skipped_steps);
  if (state.loss_scale > 0.0) {
    dict.insert("loss_scale", state.loss_scale);
    dict.insert("loss_scale_good_steps", state.loss_scale_good_steps);
  }
  if (!state.teacher.empty()) dict.insert("teacher", to_ivalue(state.teacher));
  if (!state.timestep_sampler.empty()) {
    dict.insert("timestep_sampler", to_ivalue(state.timestep_sampler));
  }
  write_pickle_file(path, c10::IValue(dict));
}

TrainingState load_checkpoint(const fs::path& path) {
  const c10::IValue value = read_pickle_file(path, "checkpoint '" + path.string() + "'");
  if (!value.isGenericDict()) throw checkpoint_error(path, "does not hold a checkpoint dict");
  const auto dict = value.toGenericDict();
  const int64_t version = integer_field(dict, "format_version", path);
  if (version > kCheckpointFormatVersion) {
    throw checkpoint_error(path, "has format version " + std::to_string(version) +
                                     ", newer than this ddpm reads (" +
                                     std::to_string(kCheckpointFormatVersion) +
                                     "); use a newer ddpm");
  }
  TrainingState state;
  state.step = integer_field(dict, "step", path);
  const auto config = dict.find("config");
  if (config == dict.end() || !config->value().isString()) {
    throw checkpoint_error(path, "has no config");
  }
  nlohmann::json config_json;
  try {
    config_json = nlohmann::json::parse(config->value().toStringRef());
  } catch (const nlohmann::json::exception& error) {
    throw checkpoint_error(path, std::string("holds a config that is not JSON: ") + error.what());
  }
  try {
    state.config = config_from_json(config_json);
  } catch (const Error& error) {
    throw checkpoint_error(path, std::string("holds a config this ddpm cannot use (") +
                                     error.what() + "); was it written by another program?");
  }
  state.model = tensor_map(dict, "model", path);
  state.ema = tensor_map(dict, "ema", path);
  state.optimizer = tensor_map(dict, "optimizer", path);
  state.rng = tensor_map(dict, "rng", path);
  state.loader_epoch = integer_field(dict, "loader_epoch", path);
  state.loader_batch = integer_field(dict, "loader_batch", path);
  state.skipped_steps = static_cast<int64_t>(optional_number(dict, "skipped_steps", 0, path));
  state.loss_scale = optional_number(dict, "loss_scale", 0, path);
  state.loss_scale_good_steps =
      static_cast<int64_t>(optional_number(dict, "loss_scale_good_steps", 0, path));
  if (!std::isfinite(state.loss_scale) || state.loss_scale < 0.0 || state.skipped_steps < 0 ||
      state.loss_scale_good_steps < 0) {
    throw checkpoint_error(path, "holds a negative or non-finite loss scale or step count");
  }
  if (dict.contains("teacher")) state.teacher = tensor_map(dict, "teacher", path);
  if (dict.contains("timestep_sampler")) {
    state.timestep_sampler = tensor_map(dict, "timestep_sampler", path);
  }
  const auto source = dict.find("source");
  if (source != dict.end()) {
    if (!source->value().isString()) {
      throw checkpoint_error(path, "has a 'source' that is not text");
    }
    state.source = source->value().toStringRef();
  }
  return state;
}

fs::path checkpoint_file(const fs::path& run_dir, int64_t step) {
  return run_dir / "checkpoints" / step_file_name(step);
}

std::vector<fs::path> list_checkpoints(const fs::path& run_dir) {
  std::vector<fs::path> files;
  std::error_code error;
  for (fs::directory_iterator it(run_dir / "checkpoints", error), end; !error && it != end;
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with("step_") && name.ends_with(".pt")) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());  // zero-padded step numbers sort by step
  return files;
}

void publish_checkpoint(const fs::path& run_dir, const TrainingState& state, int keep) {
  const fs::path file = checkpoint_file(run_dir, state.step);
  std::error_code error;
  fs::create_directories(file.parent_path(), error);
  if (error) {
    throw checkpoint_error(file, "cannot create its folder (" + error.message() + ")");
  }
  save_checkpoint(file, state);
  sync_directory(file.parent_path());  // the step file exists on disk before `latest` names it
  write_file_atomically(run_dir / "checkpoints" / "latest", file.filename().string() + "\n");
  sync_directory(file.parent_path());
  auto files = list_checkpoints(run_dir);
  const size_t kept = static_cast<size_t>(std::max(keep, 1));
  for (size_t i = 0; i + kept < files.size(); ++i) {
    if (files[i] != file) fs::remove(files[i], error);
  }
}

std::string checkpoint_name_from_pointer(std::string_view text, const fs::path& pointer) {
  std::string_view name = text;
  if (name.ends_with('\n')) name.remove_suffix(1);
  constexpr std::string_view prefix = "step_", suffix = ".pt";
  constexpr size_t max_digits = 19;  // any int64 step
  const size_t digits = name.size() - std::min(name.size(), prefix.size() + suffix.size());
  const bool well_formed =
      digits >= 1 && digits <= max_digits && name.starts_with(prefix) && name.ends_with(suffix) &&
      std::all_of(name.begin() + prefix.size(), name.end() - suffix.size(),
                  [](char c) { return c >= '0' && c <= '9'; });
  if (!well_formed) {
    throw Error(ErrorKind::runtime,
                "'" + pointer.string() + "' should name a step file (step_<digits>.pt) in its " +
                    "folder, but holds '" + printable_name(text, 40) +
                    "'; the run directory is damaged: write the name of its newest "
                    "checkpoints/step_*.pt into it");
  }
  return std::string(name);
}

fs::path resolve_checkpoint(const fs::path& file_or_run_dir) {
  std::error_code error;
  if (!fs::exists(file_or_run_dir, error)) {
    throw Error(ErrorKind::runtime, "checkpoint '" + file_or_run_dir.string() +
                                        "' does not exist; pass a checkpoint file or a run "
                                        "directory written by ddpm train");
  }
  if (!fs::is_directory(file_or_run_dir, error)) return file_or_run_dir;
  const fs::path pointer = file_or_run_dir / "checkpoints" / "latest";
  std::ifstream in(pointer, std::ios::binary);
  // A pointer is one short line: more than this is refused unread.
  std::string text(64, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.empty()) {
    // Killed between its first step file and its first `latest`: that step file is whole (it
    // was renamed into place complete), so it is the run's checkpoint.
    const std::vector<fs::path> files = list_checkpoints(file_or_run_dir);
    if (!files.empty() && !fs::exists(pointer, error)) return files.back();
    throw Error(ErrorKind::runtime, "run directory '" + file_or_run_dir.string() +
                                        "' has no checkpoints/latest; has ddpm train written a "
                                        "checkpoint there yet?");
  }
  const std::string name = checkpoint_name_from_pointer(text, pointer);
  const fs::path file = file_or_run_dir / "checkpoints" / name;
  if (!fs::exists(file, error)) {
    throw Error(ErrorKind::runtime, "'" + pointer.string() + "' names " + name +
                                        ", which does not exist");
  }
  return file;
}

}  // namespace ddpm
