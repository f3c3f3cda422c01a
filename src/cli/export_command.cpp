// `ddpm export`: a checkpoint to a diffusers DDPMPipeline folder.
#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/error.h"
#include "formats/checkpoint.h"
#include "formats/weights.h"
#include "interop/diffusers_folder.h"
#include "interop/model_source.h"
#include "model/unet.h"

namespace ddpm::cli {

int run_export(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm export",
      "Writes a checkpoint as a diffusers DDPMPipeline folder: model_index.json, "
      "unet/config.json (every UNet2DModel field written out), "
      "unet/diffusion_pytorch_model.safetensors and scheduler/scheduler_config.json, so that "
      "DDPMPipeline.from_pretrained(DIR) loads it. With --out FILE.pt instead: a ddpm checkpoint "
      "for sampling and --init-from, with one set of weights (--weights) and the config, "
      "without the optimizer state (a fraction of a training checkpoint's size).");
  options.add_options()("checkpoint",
                        "checkpoint file, run directory (its latest) or diffusers model folder",
                        cxxopts::value<std::string>())(
      "o,out", "the folder to write, or a .pt file (a sampling checkpoint)",
      cxxopts::value<std::string>())(
      "weights", "ema or model (the raw weights)",
      cxxopts::value<std::string>()->default_value("ema"))(
      "overwrite", "write into an existing folder that is not empty, or replace the .pt file");
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("checkpoint") || !arguments.count("out")) {
    throw Error(ErrorKind::usage, "ddpm export needs --checkpoint FILE_OR_RUN_DIR and --out DIR");
  }
  const std::string which = arguments["weights"].as<std::string>();
  if (which != "ema" && which != "model") {
    throw Error(ErrorKind::usage, "--weights must be ema or model, got '" + which + "'");
  }
  const ModelSource source = load_model_source(arguments["checkpoint"].as<std::string>());
  for (const auto& warning : source.warnings) log::warn(warning);
  const Config& config = source.config;
  UNet model(config.model, config.data);
  load_state_dict(*model, which == "ema" ? source.ema : source.model,
                  "'" + source.path.string() + "'");
  const std::filesystem::path out = arguments["out"].as<std::string>();
  if (out.extension() == ".pt") {
    std::error_code error;
    if (!arguments.count("overwrite") && std::filesystem::exists(out, error)) {
      throw Error(ErrorKind::usage, "'" + out.string() +
                                        "' exists; pass --overwrite to replace it, or choose "
                                        "another --out");
    }
    ModelSource chosen = source;
    if (which == "model") chosen.ema = source.model;
    TrainingState state = imported_checkpoint(chosen);
    state.step = source.step;
    if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path(), error);
    save_checkpoint(out, state);
    log::info("wrote the " + std::string(which == "ema" ? "EMA" : "raw") + " weights of " +
              source.path.string() + " (step " + std::to_string(source.step) + ", " +
              std::to_string(model->parameter_count()) + " parameters) and its config to " +
              out.string() + ", without optimizer state: ddpm sample --checkpoint " +
              out.string());
    return 0;
  }
  WeightMap weights;
  for (const auto& entry : state_dict(*model)) weights[entry.key()] = entry.value();

  std::vector<std::string> warnings;
  write_diffusers_pipeline(out, config, weights, arguments.count("overwrite") > 0, warnings);
  for (const auto& warning : warnings) log::warn(warning);
  log::info("exported " + std::string(which == "ema" ? "the EMA" : "the raw") + " weights of " +
            source.path.string() + " (" + std::to_string(model->parameter_count()) +
            " parameters) to " + out.string() + "; in Python: DDPMPipeline.from_pretrained(\"" +
            out.string() + "\")");
  return 0;
}

}  // namespace ddpm::cli
