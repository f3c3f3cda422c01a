// `ddpm bench`: training and sampling throughput, peak memory and model FLOP utilisation of a
// config's network, on synthetic data so that only the model, optimizer and sampler are timed.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "ddpm/device.h"
#include "ddpm/error.h"
#include "ddpm/model_summary.h"
#include "ddpm/sampler.h"
#include "ddpm/train_step.h"

namespace ddpm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Images per second of training: warm-up steps first, then `steps` timed steps.
double time_training(const Config& config, torch::Device device, bool bf16, int batch,
                     int warmup, int steps) {
  torch::manual_seed(config.train.seed);
  UNet model(config.model, config.data);
  UNet ema_model(config.model, config.data);
  model->to(device);
  ema_model->to(device);
  model->train();
  const NoiseSchedule schedule = NoiseSchedule(config.diffusion).to(device);
  TrainStep train_step(model, ema_model, schedule, config.train, bf16);
  const auto x0 = torch::rand({batch, config.data.channels, config.data.height, config.data.width},
                              torch::TensorOptions().device(device)) * 2 - 1;
  // Past the warm-up, so the learning rate is constant like in most of a real run.
  const int64_t first_step = config.train.warmup_steps;
  const auto run_step = [&](int64_t step) { train_step.run(x0, {config.train.seed, step}, step); };
  for (int i = 0; i < warmup; ++i) run_step(first_step + i);
  synchronize(device);
  reset_peak_memory(device);
  const auto start = Clock::now();
  for (int i = 0; i < steps; ++i) run_step(first_step + warmup + i);
  synchronize(device);
  return double(steps) * batch / seconds_since(start);
}

// Images per second of a sampling chain of `chain_steps` reverse steps, timed over `steps` of
// them (every reverse step costs one forward pass and a few element-wise operations, the same
// for DDPM and DDIM) after a warm-up chain.
double time_sampling(const Config& config, torch::Device device, SamplerKind kind, int batch,
                     int warmup, int steps, int chain_steps) {
  UNet model(config.model, config.data);
  model->to(device);
  model->eval();
  const NoiseSchedule schedule = NoiseSchedule(config.diffusion).to(device);
  const EpsilonPredictor predictor = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    return model->forward(x_t, t);
  };
  SamplerOptions options = sampler_options(config.sample);
  options.kind = kind;
  const std::vector<int64_t> shape = {config.data.channels, config.data.height, config.data.width};
  torch::InferenceMode inference;
  options.steps = std::max(1, warmup);
  sample_images(predictor, schedule, options, 0, batch, shape, 0, device);
  synchronize(device);
  reset_peak_memory(device);
  options.steps = steps;
  const auto start = Clock::now();
  sample_images(predictor, schedule, options, 0, batch, shape, 0, device);
  synchronize(device);
  const double seconds_per_step = seconds_since(start) / double(steps);
  return double(batch) / (seconds_per_step * double(chain_steps));
}

}  // namespace

int run_bench(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm bench",
      "Measures a config's network on synthetic data: training images/s (L_simple, Adam, "
      "clipping, EMA: the steps of ddpm train), sampling images/s of a DDPM or DDIM chain, peak "
      "memory and model FLOP utilisation (3 x forward FLOPs per trained image over "
      "--peak-tflops). Warm-up is excluded.");
  add_config_options(options);
  options.add_options()("mode", "train or sample", cxxopts::value<std::string>()->default_value("train"))(
      "batch", "images per batch (default: train.batch_size or sample.batch_size)",
      cxxopts::value<int>())("steps", "timed steps (training steps or reverse steps)",
                             cxxopts::value<int>()->default_value("20"))(
      "warmup", "untimed steps first", cxxopts::value<int>()->default_value("3"))(
      "sampler", "ddpm (chain of T steps) or ddim (chain of --chain-steps)",
      cxxopts::value<std::string>()->default_value("ddpm"))(
      "chain-steps", "reverse steps of the DDIM chain", cxxopts::value<int>()->default_value("50"))(
      "precision", "fp32 or bf16 (autocast, CUDA only)",
      cxxopts::value<std::string>()->default_value("fp32"))(
      "device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"))(
      "peak-tflops", "the device's peak TFLOP/s for the utilisation figure (0: not reported)",
      cxxopts::value<double>()->default_value("0"))(
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
  if (precision != "fp32" && precision != "bf16") {
    throw Error(ErrorKind::usage, "--precision must be fp32 or bf16, got '" + precision + "'");
  }
  if (steps < 1 || warmup < 0) {
    throw Error(ErrorKind::usage, "--steps must be >= 1 and --warmup >= 0");
  }
  const torch::Device device = resolve_device(arguments["device"].as<std::string>());
  const bool bf16 = precision == "bf16" && device.is_cuda();
  if (precision == "bf16" && !bf16) {
    throw Error(ErrorKind::usage, "--precision bf16 autocasts on CUDA only; this device is " +
                                      device.str());
  }
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
                           {"parameters", summary.parameters},
                           {"forward_gflops_per_image", summary.forward_flops_per_image / 1e9},
                           {"steps", steps}};
  const double peak_tflops = arguments["peak-tflops"].as<double>();
  if (mode == "train") {
    const double images_per_s = time_training(config, device, bf16, batch, warmup, steps);
    result["train_images_per_s"] = images_per_s;
    result["mfu"] = peak_tflops > 0 ? nlohmann::json(3.0 * summary.forward_flops_per_image *
                                                     images_per_s / (peak_tflops * 1e12))
                                    : nlohmann::json();
  } else {
    const SamplerKind kind = sampler_from_name(arguments["sampler"].as<std::string>());
    const int chain = kind == SamplerKind::ddpm ? static_cast<int>(config.diffusion.timesteps)
                                                : arguments["chain-steps"].as<int>();
    if (chain < 1 || chain > config.diffusion.timesteps || steps > config.diffusion.timesteps) {
      throw Error(ErrorKind::usage, "--chain-steps and --steps must be in [1, T]");
    }
    result["sampler"] = sampler_name(kind);
    result["chain_steps"] = chain;
    result["sample_images_per_s"] =
        time_sampling(config, device, kind, batch, warmup, steps, chain);
  }
  result["peak_memory_bytes"] = peak_memory_bytes(device);

  for (const auto& item : result.items()) {
    std::printf("%-26s %s\n", item.key().c_str(), item.value().dump().c_str());
  }
  if (arguments.count("json")) {
    std::ofstream(arguments["json"].as<std::string>()) << result.dump(2) << "\n";
  }
  return 0;
}

}  // namespace ddpm::cli
