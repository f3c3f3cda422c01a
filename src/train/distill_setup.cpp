// The config and teacher of a distillation run; see distill_setup.h.
#include "train/distill_setup.h"

#include <algorithm>

#include "base/log.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "train/distill_rounds.h"
#include "train/training_state.h"

namespace ddpm {
namespace {

using nlohmann::json;

// The first teacher's steps when the config names none.
int default_start_steps(const Config& teacher) {
  if (teacher.distill.start_steps > 0) return teacher.sample.steps;  // a student, distilled on
  int steps = 1;
  while (steps * 2 <= std::min(128, teacher.diffusion.timesteps)) steps *= 2;
  return steps;
}

// The value of distill.`key` in `root` when it is an integer, else `otherwise`.
int64_t integer_at(const json& root, const char* key, int64_t otherwise) {
  const json& value = root["distill"][key];
  return value.is_number_integer() ? value.get<int64_t>() : otherwise;
}

// train.steps from the distill section (left alone when its keys are not integers: parsing the
// config then names the key).
void set_total_steps(json& root) {
  DistillConfig distill;
  distill.start_steps = static_cast<int>(integer_at(root, "start_steps", 0));
  distill.end_steps = static_cast<int>(integer_at(root, "end_steps", 0));
  distill.steps_per_round = integer_at(root, "steps_per_round", 0);
  if (distill.start_steps < 1 || distill.end_steps < 1) return;
  root["train"]["steps"] = distillation_rounds(distill) * distill.steps_per_round;
}

Config parse(json root, const std::string& what) {
  set_total_steps(root);
  try {
    Config config = config_from_json(root);
    return student_config(config, 0);
  } catch (const Error& error) {
    throw Error(error.kind(), what + ": " + error.what());
  }
}

void check_data(const Config& config) {
  if (config.data.path.empty()) {
    throw config_error("data.path", "no image folder given; pass --data DIR (the images to "
                                    "distil on, e.g. the teacher's training data)");
  }
}

// --resume: the run's own config.json with the overrides.
TrainSetup resumed_distillation(const std::string& teacher, const std::string& config_file,
                                const std::vector<std::string>& overrides,
                                const std::filesystem::path& run_dir) {
  if (!config_file.empty()) {
    throw Error(ErrorKind::usage, "--resume continues with the run's own config.json; drop "
                                  "--config and pass any change as --set section.key=value");
  }
  const std::filesystem::path file = run_dir / "config.json";
  if (!std::filesystem::exists(file)) {
    throw Error(ErrorKind::usage, "--resume: '" + run_dir.string() +
                                      "' has no config.json: no distillation run to continue");
  }
  json root = read_config_file(file);
  for (const auto& assignment : overrides) apply_override(root, assignment);
  TrainSetup setup;
  setup.config = parse(root, file.string());
  if (setup.config.distill.start_steps == 0) {
    throw Error(ErrorKind::usage, "'" + run_dir.string() +
                                      "' is a ddpm train run, not a distillation: continue it "
                                      "with ddpm train --resume");
  }
  if (!teacher.empty()) {
    log::info("--resume: the round's teacher comes from the run's checkpoint, not --teacher");
  }
  check_data(setup.config);
  return setup;
}

// The keys of a config file laid over `root` one by one (a section it names that `root` lacks,
// or one that is not an object, is taken whole: parsing then names what is wrong with it).
void lay_over(json& root, const std::string& config_file) {
  const json file = read_config_file(config_file);
  if (!file.is_object()) {
    throw Error(ErrorKind::config, "config file '" + config_file + "' must be a JSON object");
  }
  for (const auto& section : file.items()) {
    if (!section.value().is_object() || !root.contains(section.key())) {
      root[section.key()] = section.value();
      continue;
    }
    for (const auto& item : section.value().items()) {
      root[section.key()][item.key()] = item.value();
    }
  }
}

}  // namespace

TrainSetup prepare_distillation(const std::string& teacher, const std::string& config_file,
                                std::vector<std::string> overrides, const std::string& data,
                                const std::filesystem::path& run_dir, bool resume) {
  if (!data.empty()) {
    overrides.push_back("data.path=" + std::filesystem::absolute(data).string());
  }
  if (resume) return resumed_distillation(teacher, config_file, overrides, run_dir);
  if (teacher.empty()) {
    throw Error(ErrorKind::usage, "ddpm distill needs --teacher: a checkpoint, a run directory "
                                  "or a diffusers folder (e.g. data/models/fashion_mnist_cpu.pt)");
  }
  TrainSetup setup;
  setup.init = load_model_source(teacher);
  for (const auto& warning : setup.init.warnings) log::warn(warning);
  json root = config_to_json(setup.init.config);
  root["distill"]["start_steps"] = 0;
  if (!config_file.empty()) lay_over(root, config_file);
  for (const auto& assignment : overrides) apply_override(root, assignment);
  if (integer_at(root, "start_steps", -1) == 0) {
    root["distill"]["start_steps"] = default_start_steps(setup.init.config);
  }
  setup.config = parse(root, config_file.empty() ? "the teacher's config" : config_file);
  check_data(setup.config);
  check_same_model(setup.init.config, setup.config, "--teacher '" + teacher + "'");
  setup.fine_tune = true;
  setup.init_source =
      "teacher " + (setup.init.diffusers
                        ? setup.init.origin
                        : "checkpoint '" + setup.init.path.string() + "' (step " +
                              std::to_string(setup.init.step) + ", EMA weights)");
  return setup;
}

}  // namespace ddpm
