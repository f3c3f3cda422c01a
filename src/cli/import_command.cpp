// `ddpm import`: a diffusers model folder to a ddpm checkpoint that every command accepts.
#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/error.h"
#include "formats/weights.h"
#include "interop/model_source.h"
#include "model/unet.h"

namespace ddpm::cli {

int run_import(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm import",
      "Reads a diffusers model folder (flat, as the google/ddpm-* repositories, or a "
      "DDPMPipeline's unet/ and scheduler/; weights as safetensors, sharded safetensors or .bin) "
      "and writes a ddpm checkpoint: the resolved config, the weights as both model and EMA, no "
      "optimizer state, and the folder recorded as its source.");
  options.positional_help("DIR");
  options.add_options()("folder", "the diffusers model folder", cxxopts::value<std::string>())(
      "o,out", "the checkpoint file to write", cxxopts::value<std::string>())(
      "overwrite", "replace an existing --out file");
  options.parse_positional({"folder"});
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("folder") || !arguments.count("out")) {
    throw Error(ErrorKind::usage, "ddpm import needs a diffusers folder and --out FILE, e.g. "
                                  "ddpm import models/ddpm-cifar10-32 --out models/cifar10.pt");
  }
  const std::filesystem::path folder = arguments["folder"].as<std::string>();
  const std::filesystem::path out = arguments["out"].as<std::string>();
  std::error_code error;
  if (!arguments.count("overwrite") && std::filesystem::exists(out, error)) {
    throw Error(ErrorKind::usage, "'" + out.string() +
                                      "' exists; pass --overwrite to replace it, or choose "
                                      "another --out");
  }
  const ModelSource source = load_model_source(folder);
  if (!source.diffusers) {
    throw Error(ErrorKind::usage, "'" + folder.string() +
                                      "' is a ddpm checkpoint already; ddpm import reads diffusers "
                                      "folders (every command takes a checkpoint as it is)");
  }
  for (const auto& warning : source.warnings) log::warn(warning);
  // The weights must build the model the configs describe, before anything is written.
  const Config& config = source.config;
  UNet model(config.model, config.data);
  load_state_dict(*model, source.ema, "'" + folder.string() + "'");

  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path(), error);
  save_checkpoint(out, imported_checkpoint(source));
  const DataConfig& data = config.data;
  log::info("imported " + source.origin + ": " + std::to_string(model->parameter_count()) +
            " parameters, images " + std::to_string(data.channels) + "x" +
            std::to_string(data.height) + "x" + std::to_string(data.width) + ", T = " +
            std::to_string(config.diffusion.timesteps) + "; wrote " + out.string());
  return 0;
}

}  // namespace ddpm::cli
