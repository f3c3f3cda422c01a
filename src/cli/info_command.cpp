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

  UNet model(config.model, config.data);
  const ModelSummary summary = summarize(model);
  const NoiseSchedule schedule(config.diffusion);
  std::string device;
  try {
    device = describe_device(resolve_device(config.train.device));
  } catch (const Error& error) {
    device = std::string("unavailable: ") + error.what();
  }

  const double gflops = summary.forward_flops_per_image / 1e9;
  const double activation_mib = summary.activation_bytes_per_image / double(1 << 20);
  const double weights_mib = double(summary.parameters) * sizeof(float) / double(1 << 20);
  const auto& alpha_bar = schedule.table().alpha_bar;
  const SampleConfig& sample = config.sample;
  const SamplerKind kind = sampler_from_name(sample.sampler);
  const TimestepGrid grid = timestep_grid(schedule.table(), kind, sample.steps, sample.spacing);
  // The timesteps in the order the chain runs them: integers, or float32 values for the
  // sigma-space samplers' fractional spacings.
  nlohmann::json visited = nlohmann::json::array();
  for (const double t : grid.timesteps) {
    if (grid.fractional) {
      visited.push_back(t);
    } else {
      visited.push_back(static_cast<int64_t>(t));
    }
  }

  if (arguments.count("json")) {
    nlohmann::json out = {{"parameters", summary.parameters},
                          {"forward_gflops_per_image", gflops},
                          {"activation_mib_per_image", activation_mib},
                          {"timesteps", schedule.timesteps()},
                          {"schedule", config.diffusion.schedule},
                          {"prediction", config.diffusion.prediction},
                          {"device", device}};
    for (int64_t t : report_timesteps(schedule.timesteps())) {
      out["alpha_bar"][std::to_string(t)] = alpha_bar[t];
    }
    out["sampling"] = {{"sampler", sample.sampler},
                       {"steps", sample.steps},
                       {"spacing", sample.spacing},
                       {"nfe", sampler_evaluations(kind, sample.steps)},
                       {"timesteps", visited}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  const ModelConfig& model_config = config.model;
  std::printf("image        %d x %d x %d (channels x height x width)\n", config.data.channels,
              config.data.height, config.data.width);
  const std::string heads =
      model_config.attention_head_channels > 0
          ? "heads of " + std::to_string(model_config.attention_head_channels) + " channels"
          : std::to_string(model_config.attention_heads) + " head(s)";
  std::printf("model        UNet, base %d channels, mult %s, %d res blocks per level, attention "
              "at %s (%s), dropout %g\n",
              model_config.base_channels, join(model_config.channel_mult).c_str(),
              model_config.num_res_blocks, join(model_config.attention_resolutions).c_str(),
              heads.c_str(), model_config.dropout);
  std::printf("parameters   %s (%.1f MiB as fp32)\n", with_commas(summary.parameters).c_str(),
              weights_mib);
  std::printf("forward      %.2f GFLOP per image\n", gflops);
  std::printf("activations  %.1f MiB per image (fp32, kept for backward, estimate)\n",
              activation_mib);
  std::printf("schedule     %s, T = %lld, the network predicts %s\n",
              config.diffusion.schedule.c_str(), static_cast<long long>(schedule.timesteps()),
              config.diffusion.prediction.c_str());
  for (int64_t t : report_timesteps(schedule.timesteps())) {
    std::printf("  alpha_bar[t = %4lld] = %.6g\n", static_cast<long long>(t), alpha_bar[t]);
  }
  std::string chain;  // elided past a few
  for (size_t k = 0; k < visited.size(); ++k) {
    if (visited.size() > 8 && k == 4) {
      chain += ", ...";
      k = visited.size() - 3;
    }
    chain += (chain.empty() ? "" : ", ") + visited[k].dump();
  }
  std::printf("sampling     %s, %d steps (%d network evaluations), %s spacing: t = %s\n",
              sample.sampler.c_str(), sample.steps, sampler_evaluations(kind, sample.steps),
              sample.spacing.c_str(), chain.c_str());
  std::printf("device       %s\n", device.c_str());
  return 0;
}

}  // namespace ddpm::cli
