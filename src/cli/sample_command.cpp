// `ddpm sample`: run the reverse chain from a checkpoint and write PNGs.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "commands.h"
#include "common.h"
#include "ddpm/checkpoint.h"
#include "ddpm/config_json.h"
#include "ddpm/device.h"
#include "ddpm/error.h"
#include "ddpm/generation.h"
#include "ddpm/guidance.h"
#include "ddpm/image_io.h"
#include "ddpm/log.h"
#include "ddpm/model_source.h"
#include "ddpm/sampler.h"
#include "ddpm/unet.h"
#include "ddpm/weights.h"
#include "progress.h"
#include "sample_classes.h"

namespace ddpm::cli {
namespace {

namespace fs = std::filesystem;

// --num, --batch, --sampler, ... are shorthands for keys of the sample section.
std::vector<std::string> sample_overrides(const cxxopts::ParseResult& arguments) {
  std::vector<std::string> overrides;
  if (arguments.count("set")) overrides = arguments["set"].as<std::vector<std::string>>();
  const std::vector<std::pair<const char*, const char*>> flags = {
      {"num", "num_images"}, {"batch", "batch_size"}, {"sampler", "sampler"},
      {"steps", "steps"},    {"eta", "eta"},          {"seed", "seed"},
      {"spacing", "spacing"},  {"guidance", "guidance"}, {"precision", "precision"}};
  for (const auto& [flag, key] : flags) {
    if (arguments.count(flag)) {
      const std::string value = arguments[flag].as<std::string>();
      const bool text = std::string(flag) == "sampler" || std::string(flag) == "spacing" ||
                        std::string(flag) == "precision";
      overrides.push_back(std::string("sample.") + key + "=" +
                          (text ? nlohmann::json(value).dump() : value));
    }
  }
  return overrides;
}

// --noise FILE: x_T for images 0 .. N-1 of the shape the model makes, as a tensor saved by
// torch.save. Checked whole before any sampling starts.
torch::Tensor read_noise(const fs::path& file, const Config& config) {
  const std::string what = "noise file '" + file.string() + "'";
  const c10::IValue value = read_pickle_file(file, what);
  if (!value.isTensor()) {
    throw Error(ErrorKind::runtime, what + " does not hold a tensor; save one with "
                                           "torch.save(torch.randn(N, C, H, W), path)");
  }
  const torch::Tensor noise = value.toTensor();
  const std::vector<int64_t> image = {config.data.channels, config.data.height, config.data.width};
  const std::string wanted = "[N, " + std::to_string(image[0]) + ", " + std::to_string(image[1]) +
                             ", " + std::to_string(image[2]) + "] with N >= --num (" +
                             std::to_string(config.sample.num_images) + ")";
  if (noise.dim() != 4 || noise.size(1) != image[0] || noise.size(2) != image[1] ||
      noise.size(3) != image[2] || noise.size(0) < config.sample.num_images) {
    throw Error(ErrorKind::runtime, what + " has shape " + c10::str(noise.sizes()) +
                                        "; this model samples " + wanted);
  }
  if (!noise.is_floating_point()) {
    throw Error(ErrorKind::runtime, what + " holds " + std::string(c10::toString(
                                        noise.scalar_type())) + " values; x_T must be float32");
  }
  const torch::Tensor values = noise.to(torch::kCPU, torch::kFloat32);
  if (!torch::isfinite(values).all().item<bool>()) {
    throw Error(ErrorKind::runtime, what + " holds NaN or infinite values");
  }
  return values;
}

// --list-samplers: one line per sampler, what it is and what N steps cost.
void print_samplers() {
  std::printf("%-16s %-5s %-13s %-6s %-8s %s\n", "sampler", "order", "kind", "NFE", "karras",
              "method");
  for (const SamplerInfo& info : all_samplers()) {
    const std::string kind = info.kind == SamplerKind::ddim ? "deterministic*"
                             : info.stochastic            ? "stochastic"
                                                          : "deterministic";
    std::printf("%-16s %-5d %-13s %-6s %-8s %s\n", info.name.c_str(), info.order, kind.c_str(),
                info.nfe.c_str(), info.sigma_space ? "yes" : "no", info.summary.c_str());
  }
  std::printf("\nN = --steps. * ddim is stochastic when --eta > 0. karras: takes --spacing karras "
              "(Karras et al. 2022, rho = 7).\nSpacings: uniform, quadratic, leading, trailing, "
              "linspace (diffusers' names and timesteps), karras.\n");
}

}  // namespace

int run_sample(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm sample",
      "Samples images from a checkpoint (EMA weights unless --no-ema) and writes "
      "sample_00000.png, ... with the sampling parameters in each PNG's text metadata. Image k "
      "depends only on the seed and k, not on the batch size. Defaults come from the "
      "checkpoint's config (its sample section), then these flags.");
  options.add_options()("checkpoint",
                        "checkpoint file, run directory (its latest) or diffusers model folder",
                        cxxopts::value<std::string>())(
      "o,out", "output folder", cxxopts::value<std::string>())(
      "num", "number of images (sample.num_images)", cxxopts::value<std::string>())(
      "batch", "images per batch (sample.batch_size)", cxxopts::value<std::string>())(
      "sampler",
      "ddpm, ddim, euler, euler_ancestral, heun, dpmpp_2m or dpmpp_2m_sde (sample.sampler; "
      "--list-samplers describes them)",
      cxxopts::value<std::string>())(
      "steps", "reverse steps; fewer than T respaces (sample.steps)",
      cxxopts::value<std::string>())(
      "spacing", "uniform, quadratic, leading, trailing, linspace or karras (sample.spacing)",
      cxxopts::value<std::string>())("eta", "DDIM eta (sample.eta)", cxxopts::value<std::string>())(
      "list-samplers", "print the samplers with their order, kind and cost, then exit")(
      "seed", "random seed (sample.seed)", cxxopts::value<std::string>())(
      "class",
      "a class-conditional model: sample this class, by name or index (repeatable: the "
      "classes in turn; default: every class in turn)",
      cxxopts::value<std::vector<std::string>>())(
      "guidance",
      "classifier-free guidance W: eps = eps_u + W (eps_c - eps_u); 1: the conditional model "
      "alone, 0: unconditional (sample.guidance)",
      cxxopts::value<std::string>())(
      "precision",
      "fp32, bf16 or fp16: the network under autocast (sample.precision): bf16 on A100/H100 "
      "and newer GPUs, fp16 on V100/T4; fp32 on the CPU",
      cxxopts::value<std::string>())(
      "noise", "x_T of image k from row k of this tensor [N, C, H, W] (saved by torch.save)",
      cxxopts::value<std::string>())(
      "grid", "also write all images as one grid PNG to this file", cxxopts::value<std::string>())(
      "trajectory", "write trajectory.png: each image's predicted x0 every K steps",
      cxxopts::value<int>())("no-ema", "use the raw weights instead of the EMA")(
      "overwrite", "replace existing output files")(
      "set", "override a config key, e.g. --set sample.variance=fixed_small (repeatable)",
      cxxopts::value<std::vector<std::string>>())("device", "auto, cpu, cuda or cuda:N",
                                                  cxxopts::value<std::string>()->default_value(
                                                      "auto"));
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (arguments.count("list-samplers")) {
    print_samplers();
    return 0;
  }
  if (!arguments.count("checkpoint") || !arguments.count("out")) {
    throw Error(ErrorKind::usage, "ddpm sample needs --checkpoint FILE_OR_RUN_DIR and --out DIR");
  }

  const ModelSource source = load_model_source(arguments["checkpoint"].as<std::string>());
  for (const auto& warning : source.warnings) log::warn(warning);
  const fs::path& checkpoint = source.path;
  const Config config = sampling_config(source.config, sample_overrides(arguments));
  const SampleConfig& sample = config.sample;
  const torch::Tensor noise =
      arguments.count("noise") ? read_noise(arguments["noise"].as<std::string>(), config)
                               : torch::Tensor();

  const SampleClasses classes = plan_sample_classes(
      arguments.count("class") ? arguments["class"].as<std::vector<std::string>>()
                               : std::vector<std::string>{},
      config, sample.num_images);
  const bool guided = !classes.labels.empty();

  const fs::path out = arguments["out"].as<std::string>();
  const bool overwrite = arguments.count("overwrite") > 0;
  const int trajectory_every = arguments.count("trajectory") ? arguments["trajectory"].as<int>() : 0;
  if (trajectory_every < 0) throw Error(ErrorKind::usage, "--trajectory must be >= 1");
  std::vector<fs::path> outputs;
  for (int64_t index = 0; index < sample.num_images; ++index) {
    outputs.push_back(sample_file(out, classes, config, index));
  }
  if (arguments.count("grid")) outputs.push_back(arguments["grid"].as<std::string>());
  if (trajectory_every > 0) outputs.push_back(out / "trajectory.png");
  if (!overwrite) {
    for (const auto& file : outputs) {
      if (fs::exists(file)) {
        throw Error(ErrorKind::usage, "'" + file.string() +
                                          "' exists; pass --overwrite to replace it, or choose "
                                          "another --out");
      }
    }
  }
  for (const auto& file : outputs) {
    std::error_code error;
    fs::create_directories(file.parent_path().empty() ? fs::path(".") : file.parent_path(),
                           error);
    if (error) {
      throw Error(ErrorKind::runtime, "cannot create '" + file.parent_path().string() +
                                          "': " + error.message());
    }
  }

  const torch::Device device = resolve_device(arguments["device"].as<std::string>());
  const bool use_ema = !arguments.count("no-ema");
  if (!use_ema && source.diffusers) {
    log::warn("--no-ema: a diffusers folder holds one set of weights; sampling with those");
  }
  SamplingModel model = load_sampling_model(source, config, device, use_ema);
  const SamplerOptions sampler = sampler_options(sample, config.diffusion);
  validate_sampler_options(sampler, model.schedule.timesteps());  // before any model call
  const int evaluations = sampler_evaluations(sampler.kind, sample.steps);
  log::info("sampling " + std::to_string(sample.num_images) + " images with " +
            sampler_name(sampler.kind) + ", " + std::to_string(sample.steps) + " steps (" +
            sample.spacing + " spacing, " + std::to_string(evaluations) +
            " network evaluations per image), from " +
            checkpoint.string() +
            (source.diffusers ? std::string(" (diffusers)")
                              : " (step " + std::to_string(source.step) +
                                    (use_ema ? ", EMA" : ", raw weights") + ")") +
            (noise.defined() ? ", x_T from --noise" : "") + " on " + describe_device(device));
  if (guided) {
    std::string names;
    for (int64_t label : classes.classes) names += " " + class_name(config, label);
    log::info("classes" + names + " in turn, guidance " +
              nlohmann::json(sample.guidance).dump() +
              (sample.guidance == 1.0 || sample.guidance == 0.0
                   ? ""
                   : " (each evaluation runs the conditional and unconditional model as one "
                     "batch of twice the images)"));
  }

  std::vector<std::pair<std::string, std::string>> metadata = {
      {"checkpoint", checkpoint.string()},    {"step", std::to_string(source.step)},
      {"weights", source.diffusers ? "diffusers" : use_ema ? "ema" : "raw"},
      {"sampler", sampler_name(sampler.kind)},
      {"steps", std::to_string(sample.steps)}, {"nfe", std::to_string(evaluations)},
      {"spacing", sample.spacing},
      {"clip_denoised", sample.clip_denoised ? "true" : "false"},
      {"seed", std::to_string(sample.seed)}};
  if (sampler.kind == SamplerKind::ddim) {
    metadata.emplace_back("eta", nlohmann::json(sample.eta).dump());
  }
  if (sampler.kind == SamplerKind::ddpm) metadata.emplace_back("variance", sample.variance);
  if (noise.defined()) metadata.emplace_back("noise", arguments["noise"].as<std::string>());
  if (guided) metadata.emplace_back("guidance", nlohmann::json(sample.guidance).dump());
  if (sample.precision != "fp32") {
    metadata.emplace_back("precision", sample.precision);
    if (!device.is_cuda()) {
      log::warn("sample.precision " + sample.precision +
                " on the CPU: autocast runs there, but it is rarely faster than fp32 (bf16 can be, "
                "on processors with AMX)");
    }
  }
  std::vector<torch::Tensor> all_images, trajectory;
  ProgressDisplay display("sampling step", std::max(1, sample.steps / 10));
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < sample.num_images; first += sample.batch_size) {
    const int64_t count = std::min<int64_t>(sample.batch_size, sample.num_images - first);
    std::vector<torch::Tensor> frames;
    const SamplerCallback progress = [&](int step, int total, const torch::Tensor&,
                                         const torch::Tensor& x0) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      display.update(step + 1, total, elapsed,
                     "images " + std::to_string(first) + "-" + std::to_string(first + count - 1));
      if (trajectory_every > 0 && ((step + 1) % trajectory_every == 0 || step + 1 == total)) {
        frames.push_back(x0.detach().cpu());
      }
    };
    const torch::Tensor images =
        sample_batch(model, config, sampler, classes.labels, first, count, noise, progress);
    for (int64_t i = 0; i < count; ++i) {
      auto text = metadata;
      text.emplace_back("index", std::to_string(first + i));
      if (guided) {
        text.emplace_back("class", class_name(config, classes.labels[first + i]));
        text.emplace_back("class_index", std::to_string(classes.labels[first + i]));
      }
      write_png(sample_file(out, classes, config, first + i), tensor_to_image(images[i]), text);
    }
    if (arguments.count("grid")) all_images.push_back(images);
    if (!frames.empty()) trajectory.push_back(torch::stack(frames, 1));  // [B, frames, C, H, W]
  }
  display.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (arguments.count("grid")) {
    write_png(arguments["grid"].as<std::string>(),
              sample_grid_image(torch::cat(all_images), classes), metadata);
  }
  if (!trajectory.empty()) {
    const auto strips = torch::cat(trajectory);  // one row per image, one column per frame
    write_png(out / "trajectory.png",
              make_grid(strips.flatten(0, 1), static_cast<int>(strips.size(1))), metadata);
  }
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.2f images/s", double(sample.num_images) / seconds);
  log::info("wrote " + std::to_string(sample.num_images) + " images to " + out.string() + " in " +
            format_duration(seconds) + " (" + rate + "; " + sampler_name(sampler.kind) + ", " +
            std::to_string(sample.steps) + " steps, " + std::to_string(evaluations) +
            " network evaluations per image)");
  return 0;
}

}  // namespace ddpm::cli
