// `ddpm bench`: training and sampling throughput, peak memory and model FLOP utilisation of a
// config's network, on synthetic data so that only the model, optimizer and sampler are timed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/device.h"
#include "base/op_profile.h"
#include "base/precision.h"
#include "base/suggest.h"
#include "commands.h"
#include "common.h"
#include "ddpm/error.h"
#include "diffusion/guidance.h"
#include "diffusion/sampler.h"
#include "model/model_summary.h"
#include "train/train_step.h"

namespace ddpm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One timed unit of a benchmark, ready to run after its warm-up: `run` does the work and
// `images` is what one run is worth in images (a batch per training step; for sampling, the
// batch times the fraction of the chain that one run covers).
struct Round {
  std::function<void()> run;
  double images = 0.0;
};

// `steps` training steps per round (the training step of ddpm train on a synthetic batch),
// after `warmup` untimed steps.
Round training_round(const Config& config, torch::Device device, Precision precision,
                     bool channels_last,
                     int batch, int warmup, int steps) {
  struct State {
    UNet model;
    UNet ema_model;
    NoiseSchedule schedule;  // TrainStep keeps a reference: it lives here, beside it
    torch::Tensor x0;
    int64_t step;
    std::optional<TrainStep> train_step;
  };
  torch::manual_seed(config.train.seed);
  UNet model(config.model, config.data);
  UNet ema_model(config.model, config.data);
  model->to(device);
  ema_model->to(device);
  model->set_channels_last(channels_last);
  ema_model->set_channels_last(channels_last);
  model->train();
  auto x0 = torch::rand({batch, config.data.channels, config.data.height, config.data.width},
                        torch::TensorOptions().device(device)) * 2 - 1;
  // Past the warm-up, so the learning rate is constant like in most of a real run.
  auto state = std::make_shared<State>(State{model, ema_model,
                                             NoiseSchedule(config.diffusion).to(device), x0,
                                             config.train.warmup_steps, std::nullopt});
  state->train_step.emplace(state->model, state->ema_model, state->schedule, config.train,
                            loss_options(config), precision);
  const uint64_t seed = config.train.seed;
  const auto run_steps = [state, seed](int count) {
    for (int i = 0; i < count; ++i, ++state->step) {
      state->train_step->run(state->x0, {seed, state->step}, state->step);
    }
  };
  run_steps(warmup);
  return {[run_steps, steps] { run_steps(steps); }, double(steps) * batch};
}

// A sampling chain of `steps` reverse steps per round, worth batch x steps / chain_steps images
// of a `chain_steps` chain (every reverse step costs the same: one forward pass, two for heun,
// and a few element-wise operations), after a warm-up chain of `warmup` steps.
Round sampling_round(const Config& config, torch::Device device, SamplerKind kind,
                     Precision precision, bool channels_last, int batch, int warmup, int steps,
                     int chain_steps) {
  UNet model(config.model, config.data);
  model->to(device);
  model->set_channels_last(channels_last);
  model->eval();
  const NoiseSchedule schedule = NoiseSchedule(config.diffusion).to(device);
  const EpsilonPredictor predictor = guided_predictor(model, {}, 1.0, precision);
  SamplerOptions options = sampler_options(config.sample, config.diffusion);
  options.kind = kind;
  // The config's sample section may name another sampler: keep only what suits this one.
  if (kind != SamplerKind::ddim) options.eta = 0.0;
  if (options.spacing == "karras" && !sampler_info(kind).sigma_space) options.spacing = "uniform";
  const std::vector<int64_t> shape = {config.data.channels, config.data.height, config.data.width};
  const auto run_chain = [=](int chain) {
    torch::InferenceMode inference;
    SamplerOptions chain_options = options;
    chain_options.steps = chain;
    sample_images(predictor, schedule, chain_options, 0, batch, shape, 0, device);
  };
  run_chain(std::max(1, warmup));
  return {[run_chain, steps] { run_chain(steps); }, double(batch) * steps / chain_steps};
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

// With --sync, a round starts only when a line arrives on stdin, so that an outside script can
// interleave the rounds of several benchmark processes and compare them round by round.
void wait_for_go() {
  std::string line;
  if (!std::getline(std::cin, line)) {
    throw Error(ErrorKind::usage, "--sync: standard input closed before every round had started; "
                                  "send one line per round (or run without --sync)");
  }
}

}  // namespace

int run_bench(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm bench",
      "Measures a config's network on synthetic data: training images/s (L_simple, Adam, "
      "clipping, EMA: the steps of ddpm train), sampling images/s of a sampling chain, peak "
      "memory and model FLOP utilisation (3 x forward FLOPs per trained image over "
      "--peak-tflops). Warm-up is excluded.");
  add_config_options(options);
  options.add_options()("mode", "train or sample", cxxopts::value<std::string>()->default_value("train"))(
      "batch", "images per batch (default: train.batch_size or sample.batch_size)",
      cxxopts::value<int>())("steps", "timed steps (training steps or reverse steps)",
                             cxxopts::value<int>()->default_value("20"))(
      "warmup", "untimed steps first", cxxopts::value<int>()->default_value("3"))(
      "sampler",
      "ddpm (chain of T steps) or any other sampler of ddpm sample --list-samplers (chain of "
      "--chain-steps)",
      cxxopts::value<std::string>()->default_value("ddpm"))(
      "chain-steps", "reverse steps of a chain other than ddpm's",
      cxxopts::value<int>()->default_value("50"))(
      "precision",
      choice_list(precision_names()) + " (autocast; fp16 with the loss scaler of "
                                       "train.precision fp16)",
      cxxopts::value<std::string>()->default_value("fp32"))(
      "device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"))(
      "memory-format", "auto (channels-last on the CPU), channels_last or contiguous",
      cxxopts::value<std::string>()->default_value("auto"))(
      "peak-tflops", "the device's peak TFLOP/s for the utilisation figure (0: not reported)",
      cxxopts::value<double>()->default_value("0"))(
      "rounds", "timed rounds of --steps steps; the figure is their median",
      cxxopts::value<int>()->default_value("1"))(
      "sync", "print 'ready' after the warm-up, then start each round on a line from stdin, "
              "print 'round IMAGES_PER_S' after it, and finish when stdin closes (for "
              "dev/bench_compare.py)")(
      "profile", "after the rounds, profile one more round: print the operators by self time "
                 "and write a Chrome trace to FILE (chrome://tracing, ui.perfetto.dev)",
      cxxopts::value<std::string>())(
      "json", "also write the figures to this JSON file", cxxopts::value<std::string>());
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  const Config config = config_from_arguments(arguments);
  const std::string mode = arguments["mode"].as<std::string>();
  const std::string precision = arguments["precision"].as<std::string>();
  const int steps = arguments["steps"].as<int>();
  const int warmup = arguments["warmup"].as<int>();
  if (mode != "train" && mode != "sample") {
    throw Error(ErrorKind::usage, "--mode must be train or sample, got '" + mode + "'");
  }
  if (std::find(precision_names().begin(), precision_names().end(), precision) ==
      precision_names().end()) {
    throw Error(ErrorKind::usage,
                "--precision must be " + choice_list(precision_names()) + ", got '" + precision +
                    "'");
  }
  const int rounds = arguments["rounds"].as<int>();
  if (steps < 1 || warmup < 0 || rounds < 1) {
    throw Error(ErrorKind::usage, "--steps and --rounds must be >= 1 and --warmup >= 0");
  }
  const bool sync = arguments.count("sync") > 0;
  const std::string json_path = arguments.count("json") ? arguments["json"].as<std::string>() : "";
  const std::string profile_path =
      arguments.count("profile") ? arguments["profile"].as<std::string>() : "";
  for (const std::string& path : {json_path, profile_path}) {
    if (path.empty()) continue;
    const auto folder = std::filesystem::absolute(path).parent_path();
    if (!std::filesystem::is_directory(folder)) {
      throw Error(ErrorKind::usage, path + ": the folder " + folder.string() +
                                        " does not exist; create it or write elsewhere");
    }
  }
  const torch::Device device = resolve_device(arguments["device"].as<std::string>());
  const std::string memory_format = arguments["memory-format"].as<std::string>();
  if (memory_format != "auto" && memory_format != "channels_last" &&
      memory_format != "contiguous") {
    throw Error(ErrorKind::usage, "--memory-format must be auto, channels_last or contiguous, "
                                  "got '" + memory_format + "'");
  }
  const bool channels_last = memory_format == "auto" ? prefers_channels_last(device)
                                                     : memory_format == "channels_last";
  const int batch = arguments.count("batch") ? arguments["batch"].as<int>()
                    : mode == "train"         ? config.train.batch_size
                                              : config.sample.batch_size;
  if (batch < 1) throw Error(ErrorKind::usage, "--batch must be >= 1");

  UNet probe(config.model, config.data);
  const ModelSummary summary = summarize(probe);
  nlohmann::json result = {{"mode", mode},
                           {"batch", batch},
                           {"precision", precision},
                           {"device", describe_device(device)},
                           {"threads", torch::get_num_threads()},
                           {"memory_format", channels_last ? "channels_last" : "contiguous"},
                           {"parameters", summary.parameters},
                           {"forward_gflops_per_image", summary.forward_flops_per_image / 1e9},
                           {"steps", steps}};
  const double peak_tflops = arguments["peak-tflops"].as<double>();
  Round round;
  if (mode == "train") {
    round = training_round(config, device, precision_from_name(precision, "--precision"),
                           channels_last, batch, warmup, steps);
  } else {
    const SamplerKind kind = sampler_from_name(arguments["sampler"].as<std::string>());
    const int chain = kind == SamplerKind::ddpm ? static_cast<int>(config.diffusion.timesteps)
                                                : arguments["chain-steps"].as<int>();
    if (chain < 1 || chain > config.diffusion.timesteps || steps > config.diffusion.timesteps) {
      throw Error(ErrorKind::usage, "--chain-steps and --steps must be in [1, T]");
    }
    result["sampler"] = sampler_name(kind);
    result["chain_steps"] = chain;
    round = sampling_round(config, device, kind, precision_from_name(precision, "--precision"),
                           channels_last, batch, warmup, steps, chain);
  }

  synchronize(device);
  reset_peak_memory(device);
  if (sync) std::cout << "ready" << std::endl;
  std::vector<double> rates;
  for (int r = 0; r < rounds; ++r) {
    if (sync) wait_for_go();
    const auto start = Clock::now();
    round.run();
    synchronize(device);
    rates.push_back(round.images / seconds_since(start));
    if (sync) std::cout << "round " << rates.back() << std::endl;
  }
  if (sync) {
    // Finish only when the driver closes stdin, after every process's last round, so that no
    // process's exit overlaps another's timed round.
    for (std::string line; std::getline(std::cin, line);) {
    }
  }
  const double images_per_s = median(rates);
  result[mode == "train" ? "train_images_per_s" : "sample_images_per_s"] = images_per_s;
  result["rounds"] = rates;
  if (mode == "train") {
    result["mfu"] = peak_tflops > 0 ? nlohmann::json(3.0 * summary.forward_flops_per_image *
                                                     images_per_s / (peak_tflops * 1e12))
                                    : nlohmann::json();
  }
  result["peak_memory_bytes"] = peak_memory_bytes(device);

  for (const auto& item : result.items()) {
    std::printf("%-26s %s\n", item.key().c_str(), item.value().dump().c_str());
  }
  std::fflush(stdout);
  if (!json_path.empty()) write_file_atomically(json_path, result.dump(2) + "\n");
  if (!profile_path.empty()) {
    OpProfile profile(device);
    const auto start = Clock::now();
    round.run();
    synchronize(device);
    const double wall_ms = 1e3 * seconds_since(start);
    const std::vector<OpTime> times = profile.stop(profile_path);
    std::printf("\nprofile of one more round: %.1f ms (trace: %s)\n", wall_ms,
                profile_path.c_str());
    print_op_times(std::cout, times, wall_ms, 25);
  }
  return 0;
}

}  // namespace ddpm::cli
