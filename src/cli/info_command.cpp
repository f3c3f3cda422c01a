// `ddpm info`: the model and schedule a config describes, and what the model costs.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "base/device.h"
#include "commands.h"
#include "common.h"
#include "ddpm/error.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "model/model_summary.h"

namespace ddpm::cli {
namespace {

std::string join(const std::vector<int>& values) {
  std::string text;
  for (int value : values) text += (text.empty() ? "" : ", ") + std::to_string(value);
  return "[" + text + "]";
}

// "1,234,567"
std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(i, ",");
  return digits;
}

std::vector<int64_t> report_timesteps(int64_t timesteps) {
  std::vector<int64_t> result;
  for (int64_t quarter = 0; quarter <= 4; ++quarter) {
    const int64_t t = quarter == 4 ? timesteps - 1 : quarter * timesteps / 4;
    if (result.empty() || result.back() != t) result.push_back(t);
  }
  return result;
}

// What `ddpm info` reports about a config, worked out once for the table and the JSON.
struct Facts {
  ModelSummary summary;
  std::string device;
  std::vector<double> alpha_bar;  // the schedule's, at every timestep
  int64_t timesteps = 0;
  // The timesteps the sampler visits in the order the chain runs them: integers, or float32
  // values for the sigma-space samplers' fractional spacings.
  nlohmann::json visited = nlohmann::json::array();
  double gflops() const { return summary.forward_flops_per_image / 1e9; }
  double activation_mib() const { return summary.activation_bytes_per_image / double(1 << 20); }
};

Facts gather_facts(const Config& config) {
  Facts facts;
  UNet model(config.model, config.data);
  facts.summary = summarize(model);
  try {
    facts.device = describe_device(resolve_device(config.train.device));
  } catch (const Error& error) {
    facts.device = std::string("unavailable: ") + error.what();
  }
  const NoiseSchedule schedule(config.diffusion);
  facts.alpha_bar = schedule.table().alpha_bar;
  facts.timesteps = schedule.timesteps();
  const SampleConfig& sample = config.sample;
  const TimestepGrid grid =
      timestep_grid(schedule.table(), sample.sampler, sample.steps, sample.spacing);
  for (const double t : grid.timesteps) {
    if (grid.fractional) {
      facts.visited.push_back(t);
    } else {
      facts.visited.push_back(static_cast<int64_t>(t));
    }
  }
  return facts;
}

void print_json(const Config& config, const Facts& facts) {
  const SampleConfig& sample = config.sample;
  nlohmann::json out = {{"parameters", facts.summary.parameters},
                        {"forward_gflops_per_image", facts.gflops()},
                        {"activation_mib_per_image", facts.activation_mib()},
                        {"timesteps", facts.timesteps},
                        {"schedule", choice_name(config.diffusion.schedule)},
                        {"prediction", choice_name(config.diffusion.prediction)},
                        {"device", facts.device}};
  for (int64_t t : report_timesteps(facts.timesteps)) {
    out["alpha_bar"][std::to_string(t)] = facts.alpha_bar[t];
  }
  out["sampling"] = {{"sampler", choice_name(sample.sampler)},
                     {"steps", sample.steps},
                     {"spacing", choice_name(sample.spacing)},
                     {"nfe", sampler_evaluations(sample.sampler, sample.steps)},
                     {"timesteps", facts.visited}};
  std::cout << out.dump(2) << "\n";
}

void print_table(const Config& config, const Facts& facts) {
  const ModelConfig& model = config.model;
  std::printf("image        %d x %d x %d (channels x height x width)\n", config.data.channels,
              config.data.height, config.data.width);
  const std::string heads =
      model.attention_head_channels > 0
          ? "heads of " + std::to_string(model.attention_head_channels) + " channels"
          : std::to_string(model.attention_heads) + " head(s)";
  std::printf("model        UNet, base %d channels, mult %s, %d res blocks per level, attention "
              "at %s (%s), dropout %g\n",
              model.base_channels, join(model.channel_mult).c_str(), model.num_res_blocks,
              join(model.attention_resolutions).c_str(), heads.c_str(), model.dropout);
  const double weights_mib = double(facts.summary.parameters) * sizeof(float) / double(1 << 20);
  std::printf("parameters   %s (%.1f MiB as fp32)\n", with_commas(facts.summary.parameters).c_str(),
              weights_mib);
  std::printf("forward      %.2f GFLOP per image\n", facts.gflops());
  std::printf("activations  %.1f MiB per image (fp32, kept for backward, estimate)\n",
              facts.activation_mib());
  std::printf("schedule     %s, T = %lld, the network predicts %s\n",
              choice_name(config.diffusion.schedule).c_str(),
              static_cast<long long>(facts.timesteps),
              choice_name(config.diffusion.prediction).c_str());
  for (int64_t t : report_timesteps(facts.timesteps)) {
    std::printf("  alpha_bar[t = %4lld] = %.6g\n", static_cast<long long>(t), facts.alpha_bar[t]);
  }
  const nlohmann::json& visited = facts.visited;
  std::string chain;  // elided past a few
  for (size_t k = 0; k < visited.size(); ++k) {
    if (visited.size() > 8 && k == 4) {
      chain += ", ...";
      k = visited.size() - 3;
    }
    chain += (chain.empty() ? "" : ", ") + visited[k].dump();
  }
  const SampleConfig& sample = config.sample;
  std::printf("sampling     %s, %d steps (%d network evaluations), %s spacing: t = %s\n",
              choice_name(sample.sampler).c_str(), sample.steps,
              sampler_evaluations(sample.sampler, sample.steps),
              choice_name(sample.spacing).c_str(), chain.c_str());
  std::printf("device       %s\n", facts.device.c_str());
}

}  // namespace

int run_info(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm info",
      "Prints the model a config describes (parameter count, forward GFLOPs and activation "
      "memory per image), its noise schedule (alpha_bar at a few timesteps t, 0-based) and the "
      "timesteps its sampler visits (sample.sampler, steps, spacing).");
  add_config_options(options);
  options.add_options()("json", "print the summary as JSON instead of a table");
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  const Config config = config_from_arguments(arguments);
  const Facts facts = gather_facts(config);
  if (arguments.count("json")) {
    print_json(config, facts);
  } else {
    print_table(config, facts);
  }
  return 0;
}

}  // namespace ddpm::cli
