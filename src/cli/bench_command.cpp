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
#include "config/config_json.h"
#include "ddpm/error.h"
#include "diffusion/guidance.h"
#include "diffusion/image_chains.h"
#include "diffusion/sampler.h"
#include "interop/model_source.h"
#include "interop/sampling_model.h"
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
// `network`: a loaded model (--checkpoint), or null for a fresh UNet of the config.
Round sampling_round(const Config& config, std::shared_ptr<Network> network, torch::Device device,
                     SamplerKind kind, Precision precision, bool channels_last, int batch,
                     int warmup, int steps, int chain_steps) {
  if (!network) {
    UNet model(config.model, config.data);
    model->to(device);
    model->set_channels_last(channels_last);
    model->eval();
    network = std::make_shared<UNetNetwork>(model);
  }
  if (network->max_batch() > 0 && batch > network->max_batch()) {
    throw Error(ErrorKind::usage, "--batch " + std::to_string(batch) + " is over the " +
                                      std::to_string(network->max_batch()) +
                                      " images per call the package takes (ddpm compile "
                                      "--max-batch)");
  }
  const NoiseSchedule schedule = NoiseSchedule(config.diffusion).to(device);
  const EpsilonPredictor unguided = guided_predictor(*network, {}, 1.0, precision);
  const EpsilonPredictor predictor = [network, unguided](const torch::Tensor& x_t,
                                                         const torch::Tensor& t) {
    return unguided(x_t, t);  // holds the network
  };
  SamplerOptions options = sampler_options(config.sample, config.diffusion);
  options.kind = kind;
  // The config's sample section may name another sampler: keep only what suits this one.
  if (kind != SamplerKind::ddim) options.eta = 0.0;
  if (options.spacing == Spacing::karras && !sampler_info(kind).sigma_space) {
    options.spacing = Spacing::uniform;
  }
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

void add_bench_options(cxxopts::Options& options) {
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
      "json", "also write the figures to this JSON file", cxxopts::value<std::string>())(
      "checkpoint",
      "sample with this model instead of a fresh network of --config: a checkpoint, run "
      "directory, diffusers folder or compiled package (.pt2)",
      cxxopts::value<std::string>());
}

// The command line of one benchmark, checked.
struct BenchPlan {
  bool train = true;  // else sampling
  Precision precision = Precision::fp32;
  int steps = 0, warmup = 0, rounds = 0, batch = 0;
  bool sync = false, channels_last = false;
  std::string json_path, profile_path;
  torch::Device device = torch::kCPU;
};

BenchPlan bench_plan(const cxxopts::ParseResult& arguments, const Config& config) {
  BenchPlan plan;
  const std::string mode = arguments["mode"].as<std::string>();
  if (mode != "train" && mode != "sample") {
    throw Error(ErrorKind::usage, "--mode must be train or sample, got '" + mode + "'");
  }
  plan.train = mode == "train";
  const std::string precision = arguments["precision"].as<std::string>();
  if (std::find(precision_names().begin(), precision_names().end(), precision) ==
      precision_names().end()) {
    throw Error(ErrorKind::usage,
                "--precision must be " + choice_list(precision_names()) + ", got '" + precision +
                    "'");
  }
  plan.precision = precision_from_name(precision, "--precision");
  plan.steps = arguments["steps"].as<int>();
  plan.warmup = arguments["warmup"].as<int>();
  plan.rounds = arguments["rounds"].as<int>();
  if (plan.steps < 1 || plan.warmup < 0 || plan.rounds < 1) {
    throw Error(ErrorKind::usage, "--steps and --rounds must be >= 1 and --warmup >= 0");
  }
  plan.sync = arguments.count("sync") > 0;
  plan.json_path = arguments.count("json") ? arguments["json"].as<std::string>() : "";
  plan.profile_path = arguments.count("profile") ? arguments["profile"].as<std::string>() : "";
  for (const std::string& path : {plan.json_path, plan.profile_path}) {
    if (path.empty()) continue;
    const auto folder = std::filesystem::absolute(path).parent_path();
    if (!std::filesystem::is_directory(folder)) {
      throw Error(ErrorKind::usage, path + ": the folder " + folder.string() +
                                        " does not exist; create it or write elsewhere");
    }
  }
  plan.device = resolve_device(arguments["device"].as<std::string>());
  const std::string memory_format = arguments["memory-format"].as<std::string>();
  if (memory_format != "auto" && memory_format != "channels_last" &&
      memory_format != "contiguous") {
    throw Error(ErrorKind::usage, "--memory-format must be auto, channels_last or contiguous, "
                                  "got '" + memory_format + "'");
  }
  plan.channels_last = memory_format == "auto" ? prefers_channels_last(plan.device)
                                               : memory_format == "channels_last";
  plan.batch = arguments.count("batch") ? arguments["batch"].as<int>()
               : plan.train             ? config.train.batch_size
                                        : config.sample.batch_size;
  if (plan.batch < 1) throw Error(ErrorKind::usage, "--batch must be >= 1");
  return plan;
}

// The round the plan times; a sampling round records its sampler and chain in `result`.
Round make_round(const cxxopts::ParseResult& arguments, const Config& config,
                 const std::shared_ptr<Network>& network, const BenchPlan& plan,
                 nlohmann::json& result) {
  if (plan.train) {
    return training_round(config, plan.device, plan.precision, plan.channels_last, plan.batch,
                          plan.warmup, plan.steps);
  }
  const auto kind =
      choice_from_name<SamplerKind>(arguments["sampler"].as<std::string>(), "--sampler");
  const int chain = kind == SamplerKind::ddpm ? static_cast<int>(config.diffusion.timesteps)
                                              : arguments["chain-steps"].as<int>();
  if (chain < 1 || chain > config.diffusion.timesteps || plan.steps > config.diffusion.timesteps) {
    throw Error(ErrorKind::usage, "--chain-steps and --steps must be in [1, T]");
  }
  result["sampler"] = choice_name(kind);
  result["chain_steps"] = chain;
  return sampling_round(config, network, plan.device, kind, plan.precision, plan.channels_last,
                        plan.batch, plan.warmup, plan.steps, chain);
}

// Images per second of each timed round (with --sync, in step with the driver).
std::vector<double> time_rounds(const Round& round, const BenchPlan& plan) {
  synchronize(plan.device);
  reset_peak_memory(plan.device);
  if (plan.sync) std::cout << "ready" << std::endl;
  std::vector<double> rates;
  for (int r = 0; r < plan.rounds; ++r) {
    if (plan.sync) wait_for_go();
    const auto start = Clock::now();
    round.run();
    synchronize(plan.device);
    rates.push_back(round.images / seconds_since(start));
    if (plan.sync) std::cout << "round " << rates.back() << std::endl;
  }
  if (plan.sync) {
    // Finish only when the driver closes stdin, after every process's last round, so that no
    // process's exit overlaps another's timed round.
    for (std::string line; std::getline(std::cin, line);) {
    }
  }
  return rates;
}

// One more round under the operator profiler: the operators by self time, and a Chrome trace.
void profile_round(const Round& round, const BenchPlan& plan) {
  OpProfile profile(plan.device);
  const auto start = Clock::now();
  round.run();
  synchronize(plan.device);
  const double wall_ms = 1e3 * seconds_since(start);
  const std::vector<OpTime> times = profile.stop(plan.profile_path);
  std::printf("\nprofile of one more round: %.1f ms (trace: %s)\n", wall_ms,
              plan.profile_path.c_str());
  print_op_times(std::cout, times, wall_ms, 25);
}

// With --checkpoint: the model's network, loaded for sampling, and its config (with --set and
// the precision: a package's own unless --precision names one) in `config`. Else null.
std::shared_ptr<Network> checkpoint_network(const cxxopts::ParseResult& arguments,
                                            Config& config) {
  if (!arguments.count("checkpoint")) return nullptr;
  if (arguments.count("config") || arguments["mode"].as<std::string>() != "sample") {
    throw Error(ErrorKind::usage, "--checkpoint measures a model's sampling: it takes "
                                  "--mode sample and no --config (the model has its own)");
  }
  const ModelSource source = load_sampling_source(arguments["checkpoint"].as<std::string>());
  config = source.config;
  if (arguments.count("set")) {
    for (const auto& assignment : arguments["set"].as<std::vector<std::string>>()) {
      apply_override(config, assignment);
    }
  }
  if (source.package && !arguments.count("precision")) {
    config.sample.precision = source.package->precision;
  } else {
    config.sample.precision = precision_from_name(arguments["precision"].as<std::string>(),
                                                  "--precision");
  }
  validate(config);
  const torch::Device device = resolve_device(arguments["device"].as<std::string>());
  return load_sampling_model(source, config, device, true).network;
}

}  // namespace

int run_bench(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm bench",
      "Measures a config's network on synthetic data: training images/s (L_simple, Adam, "
      "clipping, EMA: the steps of ddpm train), sampling images/s of a sampling chain, peak "
      "memory and model FLOP utilisation (3 x forward FLOPs per trained image over "
      "--peak-tflops). Warm-up is excluded.");
  add_bench_options(options);
  const auto parsed = parse_command(options, argc, argv, true);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  Config config = config_from_arguments(arguments);
  const std::shared_ptr<Network> network = checkpoint_network(arguments, config);
  BenchPlan plan = bench_plan(arguments, config);
  if (network) plan.precision = config.sample.precision;

  UNet probe(config.model, config.data);
  const ModelSummary summary = summarize(probe);
  const std::string mode = plan.train ? "train" : "sample";
  nlohmann::json result = {{"mode", mode},
                           {"batch", plan.batch},
                           {"precision", precision_name(plan.precision)},
                           {"device", describe_device(plan.device)},
                           {"threads", torch::get_num_threads()},
                           {"memory_format", plan.channels_last ? "channels_last" : "contiguous"},
                           {"parameters", summary.parameters},
                           {"forward_gflops_per_image", summary.forward_flops_per_image / 1e9},
                           {"steps", plan.steps}};
  if (network) result["checkpoint"] = arguments["checkpoint"].as<std::string>();
  const Round round = make_round(arguments, config, network, plan, result);
  const std::vector<double> rates = time_rounds(round, plan);
  const double images_per_s = median(rates);
  result[plan.train ? "train_images_per_s" : "sample_images_per_s"] = images_per_s;
  result["rounds"] = rates;
  if (plan.train) {
    const double peak_tflops = arguments["peak-tflops"].as<double>();
    result["mfu"] = peak_tflops > 0 ? nlohmann::json(3.0 * summary.forward_flops_per_image *
                                                     images_per_s / (peak_tflops * 1e12))
                                    : nlohmann::json();
  }
  result["peak_memory_bytes"] = peak_memory_bytes(plan.device);
  for (const auto& item : result.items()) {
    std::printf("%-26s %s\n", item.key().c_str(), item.value().dump().c_str());
  }
  std::fflush(stdout);
  if (!plan.json_path.empty()) write_file_atomically(plan.json_path, result.dump(2) + "\n");
  if (!plan.profile_path.empty()) profile_round(round, plan);
  return 0;
}

}  // namespace ddpm::cli
