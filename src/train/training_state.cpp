// Capturing and restoring a run's live state; see training_state.h.
#include "train/training_state.h"

#include "config/config_json.h"
#include "ddpm/error.h"
#include "formats/weights.h"

namespace ddpm {
namespace {

TensorMap to_map(const c10::Dict<std::string, torch::Tensor>& dict) {
  TensorMap tensors;
  for (const auto& entry : dict) tensors[entry.key()] = entry.value();
  return tensors;
}

// The generators a run draws from: the device's default generator (dropout), plus the CPU
// default when training elsewhere. The noise and timesteps need none: see draw_noise().
std::vector<std::pair<std::string, at::Generator>> default_generators(torch::Device device) {
  std::vector<std::pair<std::string, at::Generator>> generators = {
      {"cpu_default", at::detail::getDefaultCPUGenerator()}};
  if (!device.is_cpu()) {
    generators.emplace_back("device_default", at::globalContext().defaultGenerator(device));
  }
  return generators;
}

}  // namespace

TensorMap module_weights(const torch::nn::Module& module) { return to_map(state_dict(module)); }

TrainingState capture_training_state(const UNet& model, const UNet& ema,
                                     torch::optim::Adam& optimizer,
                                     torch::Device device) {
  TrainingState state;
  state.model = to_map(state_dict(*model));
  state.ema = to_map(state_dict(*ema));
  for (const auto& item : model->named_parameters()) {
    const auto found = optimizer.state().find(item.value().unsafeGetTensorImpl());
    if (found == optimizer.state().end()) continue;  // no step taken yet
    const auto& adam = static_cast<const torch::optim::AdamParamState&>(*found->second);
    state.optimizer[item.key() + ".exp_avg"] = adam.exp_avg().cpu();
    state.optimizer[item.key() + ".exp_avg_sq"] = adam.exp_avg_sq().cpu();
    state.optimizer[item.key() + ".step"] = torch::tensor(adam.step(), torch::kLong);
  }
  for (const auto& [name, generator] : default_generators(device)) {
    state.rng[name] = generator.get_state();
  }
  return state;
}

void restore_training_state(const TrainingState& state, UNet& model, UNet& ema,
                            torch::optim::Adam& optimizer, torch::Device device) {
  load_state_dict(*model, state.model, "checkpoint model weights");
  load_state_dict(*ema, state.ema, "checkpoint EMA weights");
  optimizer.state().clear();
  for (const auto& item : model->named_parameters()) {
    const auto exp_avg = state.optimizer.find(item.key() + ".exp_avg");
    const auto exp_avg_sq = state.optimizer.find(item.key() + ".exp_avg_sq");
    const auto step = state.optimizer.find(item.key() + ".step");
    if (exp_avg == state.optimizer.end() || exp_avg_sq == state.optimizer.end() ||
        step == state.optimizer.end()) {
      continue;  // saved before the first step
    }
    // In the parameter's layout (channels-last weights on the CPU), as Adam would create them.
    const auto layout = item.value().suggest_memory_format();
    auto adam = std::make_unique<torch::optim::AdamParamState>();
    adam->exp_avg(exp_avg->second.to(device).clone(layout));
    adam->exp_avg_sq(exp_avg_sq->second.to(device).clone(layout));
    adam->step(step->second.item<int64_t>());
    optimizer.state()[item.value().unsafeGetTensorImpl()] = std::move(adam);
  }
  const auto restore = [&](const std::string& name, at::Generator generator) {
    const auto found = state.rng.find(name);
    if (found == state.rng.end()) {
      throw Error(ErrorKind::runtime, "checkpoint has no random state '" + name +
                                          "' (saved on another device type?)");
    }
    generator.set_state(found->second);
  };
  for (const auto& [name, generator] : default_generators(device)) restore(name, generator);
}

namespace {

// Throws for the first key of `sections` (all of a section's keys, or only those listed) whose
// value differs between the two configs: "KEY is CURRENT but <source> SAVED; <advice>". Values
// are compared and named as a written config shows them.
using SectionKeys = std::vector<std::pair<std::string, std::vector<std::string>>>;

void require_same_keys(const Config& saved_config, const Config& config,
                       const SectionKeys& sections, bool skip_training_only,
                       const std::string& source, const std::string& advice) {
  const nlohmann::json current = config_to_json(config);
  const nlohmann::json saved_written = config_to_json(saved_config);
  for (const auto& [section, keys] : sections) {
    const nlohmann::json& saved_section = saved_written.at(section);
    for (const auto& item : current[section].items()) {
      if (!keys.empty() && std::find(keys.begin(), keys.end(), item.key()) == keys.end()) {
        continue;
      }
      if (skip_training_only && section == "model" && is_training_only_model_key(item.key())) {
        continue;
      }
      const nlohmann::json saved = saved_section.value(item.key(), nlohmann::json());
      if (saved != item.value()) {
        throw config_error(section + "." + item.key(), "is " + item.value().dump() + " but " +
                                                           source + " " + saved.dump() + "; " +
                                                           advice);
      }
    }
  }
}

}  // namespace

void check_resumable(const TrainingState& state, const Config& config,
                     const std::filesystem::path& file) {
  require_same_keys(state.config, config,
                    {{"model", {}},
                     {"data", {"image_size", "channels", "labels", "classes"}},
                     {"diffusion", {}}},
                    /*skip_training_only=*/false,
                    "checkpoint '" + file.string() + "' was trained with",
                    "resume with the run's own config (its config.json)");
}

void check_same_model(const Config& source_config, const Config& config,
                      const std::string& source) {
  require_same_keys(source_config, config, {{"model", {}}, {"data", {"image_size", "channels"}}},
                    /*skip_training_only=*/true, source + " has",
                    "set it to that in your config (`ddpm config --checkpoint SOURCE` prints the "
                    "source's whole config)");
}

}  // namespace ddpm
