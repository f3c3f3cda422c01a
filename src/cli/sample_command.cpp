// `ddpm sample`: run the reverse chain from a checkpoint and write PNGs, on the public API
// (ddpm::Pipeline, ddpm.h) as a product would; this file adds the files it writes.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/precision.h"
#include "base/suggest.h"
#include "commands.h"
#include "common.h"
#include "config/sampler_kind.h"
#include "ddpm/ddpm.h"
#include "ddpm/ddpm_tensor.h"
#include "ddpm/error.h"
#include "edit_files.h"
#include "formats/image_io.h"
#include "formats/image_tensor.h"
#include "formats/weights.h"
#include "progress.h"
#include "sample_output.h"

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
// torch.save, in SampleRequest::initial_noise's layout. Checked whole before any sampling starts.
std::vector<float> read_noise(const fs::path& file, const Pipeline& pipeline,
                              int64_t num_images) {
  const std::string what = "noise file '" + file.string() + "'";
  const c10::IValue value = read_pickle_file(file, what);
  if (!value.isTensor()) {
    throw Error(ErrorKind::runtime, what + " does not hold a tensor; save one with "
                                           "torch.save(torch.randn(N, C, H, W), path)");
  }
  const torch::Tensor noise = value.toTensor();
  const std::vector<int64_t> image = {pipeline.channels(), pipeline.height(), pipeline.width()};
  const std::string wanted = "[N, " + std::to_string(image[0]) + ", " + std::to_string(image[1]) +
                             ", " + std::to_string(image[2]) + "] with N >= --num (" +
                             std::to_string(num_images) + ")";
  if (noise.dim() != 4 || noise.size(1) != image[0] || noise.size(2) != image[1] ||
      noise.size(3) != image[2] || noise.size(0) < num_images) {
    throw Error(ErrorKind::runtime, what + " has shape " + c10::str(noise.sizes()) +
                                        "; this model samples " + wanted);
  }
  if (!noise.is_floating_point()) {
    throw Error(ErrorKind::runtime, what + " holds " + std::string(c10::toString(
                                        noise.scalar_type())) + " values; x_T must be float32");
  }
  const torch::Tensor values = noise.to(torch::kCPU, torch::kFloat32).contiguous();
  if (!torch::isfinite(values).all().item<bool>()) {
    throw Error(ErrorKind::runtime, what + " holds NaN or infinite values");
  }
  const float* data = values.data_ptr<float>();
  return std::vector<float>(data, data + values.numel());
}

// The request `ddpm sample`'s flags make: every flag as a key of the sample section, so that
// a bad value is refused as the config would refuse it.
SampleRequest sample_request(const cxxopts::ParseResult& arguments) {
  SampleRequest request;
  request.num_images = 0;  // the model's sample.num_images unless --num sets it
  request.overrides = sample_overrides(arguments);
  if (arguments.count("class")) request.classes = arguments["class"].as<std::vector<std::string>>();
  return request;
}

// Refuses to replace a file without --overwrite, then makes the folders the files go in.
void prepare_outputs(const std::vector<fs::path>& outputs, bool overwrite) {
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
}

void log_plan(const Pipeline& pipeline, const SamplePlan& plan,
              const std::vector<std::string>& class_names, bool given_noise) {
  const std::string weights = pipeline.weights();
  const std::string what =
      plan.mode == "inpaint" ? "inpainting (RePaint, jump_length " +
                                   std::to_string(plan.jump_length) + ", jump_n_sample " +
                                   std::to_string(plan.jump_n_sample) + ") "
      : plan.mode == "image-to-image"
          ? "image-to-image (strength " + nlohmann::json(plan.strength).dump() + ") on "
          : "sampling ";
  log::info(what + std::to_string(plan.num_images) + " images with " + plan.sampler +
            ", " + std::to_string(plan.steps) + " steps (" + plan.spacing + " spacing, " +
            std::to_string(plan.network_evaluations) +
            " network evaluations per image), from " + pipeline.source_path() +
            (weights == "diffusers"
                 ? std::string(" (diffusers)")
                 : " (step " + std::to_string(pipeline.step()) +
                       (weights == "ema" ? ", EMA" : ", raw weights") + ")") +
            (given_noise ? ", x_T from --noise" : "") + " on " + pipeline.device_description());
  if (!plan.timesteps.empty() && plan.timesteps.size() <= 32) {
    std::string list;
    for (double t : plan.timesteps) {
      std::ostringstream value;
      value << t;
      list += " " + value.str();
    }
    log::info("timesteps" + list);
  }
  for (const std::string& warning : plan.warnings) log::warn(warning);
  if (!plan.image_classes.empty()) {
    std::string names;
    for (int64_t label : plan.classes) names += " " + class_names[label];
    log::info("classes" + names + " in turn, guidance " + nlohmann::json(plan.guidance).dump() +
              (plan.guidance == 1.0 || plan.guidance == 0.0
                   ? ""
                   : " (each evaluation runs the conditional and unconditional model as one "
                     "batch of twice the images)"));
  }
  if (plan.precision != "fp32" && !pipeline.device().starts_with("cuda")) {
    log::warn("sample.precision " + plan.precision +
              " on the CPU: autocast runs there, but it is rarely faster than fp32 (bf16 can be, "
              "on processors with AMX)");
  }
}

using Metadata = std::vector<std::pair<std::string, std::string>>;

// The sampling parameters every PNG (and the grid) carries in its text metadata.
Metadata sample_metadata(const Pipeline& pipeline, const SamplePlan& plan,
                         const cxxopts::ParseResult& arguments) {
  Metadata metadata = {{"checkpoint", pipeline.source_path()},
                       {"step", std::to_string(pipeline.step())},
                       {"weights", pipeline.weights()},
                       {"sampler", plan.sampler},
                       {"steps", std::to_string(plan.steps)},
                       {"nfe", std::to_string(plan.network_evaluations)},
                       {"spacing", plan.spacing},
                       {"clip_denoised", plan.clip_denoised ? "true" : "false"},
                       {"seed", std::to_string(plan.seed)}};
  if (plan.sampler == "ddim") metadata.emplace_back("eta", nlohmann::json(plan.eta).dump());
  if (plan.sampler == "ddpm") metadata.emplace_back("variance", plan.variance);
  if (arguments.count("noise")) {
    metadata.emplace_back("noise", arguments["noise"].as<std::string>());
  }
  if (!plan.image_classes.empty()) {
    metadata.emplace_back("guidance", nlohmann::json(plan.guidance).dump());
  }
  if (plan.precision != "fp32") metadata.emplace_back("precision", plan.precision);
  if (plan.mode != "sample") metadata.emplace_back("mode", plan.mode);
  if (plan.mode == "image-to-image") {
    metadata.emplace_back("strength", nlohmann::json(plan.strength).dump());
  }
  if (plan.mode == "inpaint") {
    metadata.emplace_back("jump_length", std::to_string(plan.jump_length));
    metadata.emplace_back("jump_n_sample", std::to_string(plan.jump_n_sample));
  }
  return metadata;
}

// --init and --mask: each output image's input and mask files (empty when not editing).
struct InputFiles {
  std::vector<std::string> images, masks;
};

// One image's metadata: the sample's, its index, its input and mask files when editing and,
// for a class-conditional model, its class.
Metadata image_metadata(Metadata metadata, const SamplePlan& plan,
                        const std::vector<std::string>& class_names, const InputFiles& inputs,
                        int64_t index) {
  metadata.emplace_back("index", std::to_string(index));
  if (!inputs.images.empty()) metadata.emplace_back("init", inputs.images[index]);
  if (!inputs.masks.empty()) metadata.emplace_back("mask", inputs.masks[index]);
  if (!plan.image_classes.empty()) {
    const int64_t label = plan.image_classes[index];
    metadata.emplace_back("class", class_names[label]);
    metadata.emplace_back("class_index", std::to_string(label));
  }
  return metadata;
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
              "(Karras et al. 2022, rho = 7).\nSpacings: %s (diffusers' names and timesteps), "
              "karras.\nA learned-variance model (model.learn_variance): ddpm samples with its "
              "learned variances (sample.variance learned, also respaced); every other sampler "
              "uses its mean (eps) alone.\n",
              choice_list(timestep_spacing_names(), "and").c_str());
}

cxxopts::Options sample_options() {
  cxxopts::Options options(
      "ddpm sample",
      "Samples images from a checkpoint (EMA weights unless --no-ema) and writes "
      "sample_00000.png, ... with the sampling parameters in each PNG's text metadata. Image k "
      "depends only on the seed and k, not on the batch size. Defaults come from the "
      "checkpoint's config (its sample section), then these flags.");
  options.add_options()("checkpoint",
                        "checkpoint file, run directory (its latest), diffusers model folder or "
                        "ddpm compile package (.pt2)",
                        cxxopts::value<std::string>())(
      "o,out", "output folder", cxxopts::value<std::string>())(
      "num", "number of images (sample.num_images)", cxxopts::value<std::string>())(
      "batch", "images per batch (sample.batch_size)", cxxopts::value<std::string>())(
      "sampler",
      choice_list(choice_names<SamplerKind>()) + " (sample.sampler; --list-samplers describes them)",
      cxxopts::value<std::string>())(
      "steps", "reverse steps; fewer than T respaces (sample.steps)",
      cxxopts::value<std::string>())(
      "spacing", choice_list(choice_names<Spacing>()) + " (sample.spacing)",
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
      choice_list(precision_names()) +
          ": the network under autocast (sample.precision): bf16 on A100/H100 and newer GPUs, "
          "fp16 on V100/T4; fp32 on the CPU",
      cxxopts::value<std::string>())(
      "noise", "x_T of image k from row k of this tensor [N, C, H, W] (saved by torch.save)",
      cxxopts::value<std::string>())(
      "init",
      "edit these images (a file or a folder): with --mask inpaint them, with --strength "
      "turn them into samples (one output per input; --num N repeats a single input)",
      cxxopts::value<std::string>())(
      "mask",
      "inpainting (RePaint; sampler ddpm or ddim): white (>= 128) keeps the input's pixel, "
      "black is generated; a file for every image, or a folder with one mask per image, "
      "paired by file name (sample.jump_length, sample.jump_n_sample)",
      cxxopts::value<std::string>())(
      "strength",
      "image-to-image (SDEdit, every sampler): noise the input part-way and run the last "
      "floor(strength x steps) steps, 0 < strength <= 1",
      cxxopts::value<std::string>())(
      "grid", "also write all images as one grid PNG to this file", cxxopts::value<std::string>())(
      "trajectory", "write trajectory.png: each image's predicted x0 every K steps",
      cxxopts::value<int>())("no-ema", "use the raw weights instead of the EMA")(
      "overwrite", "replace existing output files")(
      "set", "override a key of the sample section, e.g. --set sample.variance=fixed_small "
             "(repeatable)",
      cxxopts::value<std::vector<std::string>>())("device", "auto, cpu, cuda or cuda:N",
                                                  cxxopts::value<std::string>()->default_value(
                                                      "auto"));
  return options;
}

// --init, --mask and --strength into the request: the input images (and masks) read as
// training data is, one output per input (a single input repeated --num times). Every refusal
// comes before anything is written.
InputFiles add_edit_inputs(const cxxopts::ParseResult& arguments, const Pipeline& pipeline,
                           SampleRequest& request) {
  const bool init = arguments.count("init") > 0;
  for (const char* flag : {"mask", "strength"}) {
    if (arguments.count(flag) && !init) {
      throw Error(ErrorKind::usage, std::string("--") + flag + " needs --init, the images " +
                                        "to edit");
    }
  }
  if (!init) return {};
  if (arguments.count("mask") == arguments.count("strength")) {
    throw Error(ErrorKind::usage, "--init needs either --mask (inpainting) or --strength "
                                  "(image-to-image)");
  }
  if (arguments.count("noise")) {
    throw Error(ErrorKind::usage, "--init starts the chain from the input images; drop --noise");
  }
  InputFiles files;
  files.images = image_files(arguments["init"].as<std::string>(), "--init");
  int64_t repeat = 0;  // a bad --num is refused as sample.num_images
  if (arguments.count("num")) {
    try {
      repeat = std::stoll(arguments["num"].as<std::string>());
    } catch (const std::exception&) {
    }
  }
  if (repeat > 0 && files.images.size() == 1) {
    files.images.assign(repeat, files.images.front());
  } else if (repeat > 0 && static_cast<size_t>(repeat) != files.images.size()) {
    throw Error(ErrorKind::usage, "--num " + std::to_string(repeat) + " with " +
                                      std::to_string(files.images.size()) +
                                      " --init images: one output per input; drop --num");
  }
  if (arguments.count("mask")) {
    files.masks = paired_masks(files.images, arguments["mask"].as<std::string>());
  } else {
    const std::string text = arguments["strength"].as<std::string>();
    try {
      request.strength = std::stod(text);
    } catch (const std::exception&) {
      throw Error(ErrorKind::usage, "--strength must be a number in (0, 1], got '" + text + "'");
    }
  }
  EditInputs inputs = pipeline.read_inputs(files.images, files.masks);
  for (const std::string& note : inputs.notes) log::info(note);
  request.init_images = std::move(inputs.images);
  request.masks = std::move(inputs.masks);
  request.num_images = static_cast<int64_t>(files.images.size());
  return files;
}

// The progress line, and with --trajectory the predicted x0 every `every` steps into `frames`.
void attach_display(SampleRequest& request, ProgressDisplay& display,
                    std::chrono::steady_clock::time_point start, const Pipeline& pipeline,
                    int every, std::vector<torch::Tensor>& frames) {
  request.on_progress = [&display, start](const SampleProgress& progress) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    display.update(progress.step, progress.steps_total, elapsed,
                   "images " + std::to_string(progress.images_done) + "-" +
                       std::to_string(progress.images_done + progress.batch_images - 1));
  };
  request.preview_every = every;
  request.on_preview = [&frames, &pipeline](const SamplePreview& preview) {
    frames.push_back(torch::tensor(preview.x0).reshape(
        {preview.count, pipeline.channels(), pipeline.height(), pipeline.width()}));
  };
}

// trajectory.png: one row per image, one column per frame ([B, frames, C, H, W] per batch).
void write_trajectory(const fs::path& file, const std::vector<torch::Tensor>& batches,
                      const Metadata& metadata) {
  const auto strips = torch::cat(batches);
  write_png(file, make_grid(strips.flatten(0, 1), static_cast<int>(strips.size(1))), metadata);
}

}  // namespace

int run_sample(int argc, char** argv) {
  cxxopts::Options options = sample_options();
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

  const fs::path out = arguments["out"].as<std::string>();
  const int trajectory_every =
      arguments.count("trajectory") ? arguments["trajectory"].as<int>() : 0;
  if (trajectory_every < 0) throw Error(ErrorKind::usage, "--trajectory must be >= 1");
  const bool use_ema = !arguments.count("no-ema");
  const Pipeline pipeline = Pipeline::load(arguments["checkpoint"].as<std::string>(),
                                           arguments["device"].as<std::string>(), use_ema);
  if (!use_ema && pipeline.weights() == "diffusers") {
    log::warn("--no-ema: a diffusers folder holds one set of weights; sampling with those");
  }
  SampleRequest request = sample_request(arguments);
  const InputFiles inputs = add_edit_inputs(arguments, pipeline, request);
  const SamplePlan plan = pipeline.plan(request);  // every refusal before any network call
  if (arguments.count("noise")) {
    request.initial_noise = read_noise(arguments["noise"].as<std::string>(), pipeline,
                                       plan.num_images);
  }
  const std::vector<std::string> class_names = pipeline.class_names();
  const SampleFiles files(out, plan, class_names);
  std::vector<fs::path> outputs = files.all();
  if (arguments.count("grid")) outputs.push_back(arguments["grid"].as<std::string>());
  if (trajectory_every > 0) outputs.push_back(out / "trajectory.png");
  prepare_outputs(outputs, arguments.count("overwrite") > 0);
  log_plan(pipeline, plan, class_names, !request.initial_noise.empty());
  const Metadata metadata = sample_metadata(pipeline, plan, arguments);

  std::vector<torch::Tensor> all_images, trajectory, frames;
  ProgressDisplay display("sampling step", std::max(1, plan.steps / 10));
  const auto start = std::chrono::steady_clock::now();
  attach_display(request, display, start, pipeline, trajectory_every, frames);
  pipeline.generate_batches(request, [&](int64_t first, const torch::Tensor& images) {
    for (int64_t i = 0; i < images.size(0); ++i) {
      write_png(files.image(first + i), tensor_to_image(images[i]),
                image_metadata(metadata, plan, class_names, inputs, first + i));
    }
    if (arguments.count("grid")) all_images.push_back(images);
    if (!frames.empty()) trajectory.push_back(torch::stack(frames, 1));  // [B, frames, C, H, W]
    frames.clear();
  });
  display.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (arguments.count("grid")) {
    write_png(arguments["grid"].as<std::string>(),
              sample_grid_image(torch::cat(all_images), plan), metadata);
  }
  if (!trajectory.empty()) write_trajectory(out / "trajectory.png", trajectory, metadata);
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.2f images/s", double(plan.num_images) / seconds);
  log::info("wrote " + std::to_string(plan.num_images) + " images to " + out.string() + " in " +
            format_duration(seconds) + " (" + rate + "; " + plan.sampler + ", " +
            std::to_string(plan.steps) + " steps, " + std::to_string(plan.network_evaluations) +
            " network evaluations per image)");
  return 0;
}

}  // namespace ddpm::cli
