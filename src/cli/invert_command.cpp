// `ddpm invert`: images to the x_T that DDIM maps back to them; `ddpm interpolate`: frames
// between two images along the great circle of their x_T, each decoded with DDIM. Both run on
// ddpm::Pipeline (ddpm.h): read_inputs, invert, generate.
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/ddpm.h"
#include "ddpm/ddpm_tensor.h"
#include "ddpm/error.h"
#include "edit_files.h"
#include "formats/image_io.h"
#include "formats/image_tensor.h"
#include "formats/weights.h"

namespace ddpm::cli {
namespace {

namespace fs = std::filesystem;

// The chain options both commands share.
void add_chain_options(cxxopts::Options& options) {
  options.add_options()("checkpoint",
                        "checkpoint file, run directory (its latest), diffusers model folder or "
                        "ddpm compile package (.pt2)",
                        cxxopts::value<std::string>())(
      "steps", "DDIM steps (the same number reconstructs)",
      cxxopts::value<int>()->default_value("50"))(
      "spacing", "the timestep spacing (sample.spacing; default: the model's)",
      cxxopts::value<std::string>())(
      "class", "a class-conditional model: the class of every image, by name or index",
      cxxopts::value<std::string>())(
      "guidance", "classifier-free guidance W (sample.guidance)", cxxopts::value<double>())(
      "batch", "images per network call", cxxopts::value<int64_t>())(
      "device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"))(
      "overwrite", "replace existing output files");
}

// The DDIM request of the flags, for `count` images.
SampleRequest chain_request(const cxxopts::ParseResult& arguments, int64_t count) {
  SampleRequest request;
  request.num_images = count;
  request.sampler = "ddim";
  request.steps = arguments["steps"].as<int>();
  request.overrides = {"sample.eta=0"};
  if (arguments.count("spacing")) {
    request.overrides.push_back("sample.spacing=" +
                                nlohmann::json(arguments["spacing"].as<std::string>()).dump());
  }
  if (arguments.count("class")) {
    request.classes.assign(count, arguments["class"].as<std::string>());
  }
  if (arguments.count("guidance")) request.guidance = arguments["guidance"].as<double>();
  if (arguments.count("batch")) request.batch_size = arguments["batch"].as<int64_t>();
  return request;
}

Pipeline load_pipeline(const cxxopts::ParseResult& arguments) {
  if (!arguments.count("checkpoint")) {
    throw Error(ErrorKind::usage, "--checkpoint FILE_OR_RUN_DIR is needed");
  }
  return Pipeline::load(arguments["checkpoint"].as<std::string>(),
                        arguments["device"].as<std::string>());
}

// x_T of the images, [N, C, H, W], logged as it goes.
torch::Tensor invert_files(const Pipeline& pipeline, const std::vector<std::string>& files,
                           const cxxopts::ParseResult& arguments) {
  if (!pipeline.class_names().empty() && !arguments.count("class") &&
      !arguments.count("guidance")) {
    throw Error(ErrorKind::usage, "a class-conditional model: pass --class, the class of the "
                                  "images, or --guidance 0 to invert with the unconditional "
                                  "model");
  }
  EditInputs inputs = pipeline.read_inputs(files);
  for (const std::string& note : inputs.notes) log::info(note);
  SampleRequest request = chain_request(arguments, static_cast<int64_t>(files.size()));
  request.init_images = std::move(inputs.images);
  const SamplePlan plan = [&] {
    SampleRequest settings = request;
    settings.init_images.clear();
    return pipeline.plan(settings);
  }();
  log::info("inverting " + std::to_string(files.size()) + " images with DDIM, " +
            std::to_string(plan.steps) + " steps (" + plan.spacing + " spacing)");
  const std::vector<float> x_T = pipeline.invert(request);
  return torch::tensor(x_T).reshape(
      {static_cast<int64_t>(files.size()), pipeline.channels(), pipeline.height(),
       pipeline.width()});
}

// An end of the interpolation: an image file, or row `row` of a noise file of ddpm invert,
// given as FILE.pt:ROW (row 0 without ":ROW"). Checked before anything is loaded or written.
struct End {
  std::string file;
  bool noise = false;
  int64_t row = 0;
};

End parse_end(const std::string& text, const std::string& flag) {
  End end{text};
  const auto colon = text.rfind(':');
  if (colon != std::string::npos && text.substr(0, colon).ends_with(".pt")) {
    end.file = text.substr(0, colon);
    try {
      end.row = std::stoll(text.substr(colon + 1));
    } catch (const std::exception&) {
      throw Error(ErrorKind::usage, flag + " '" + text + "': expected FILE.pt:ROW with a row number");
    }
  }
  end.noise = end.file.ends_with(".pt");
  if (!end.noise) {
    end.file = image_files(end.file, flag).front();
  } else if (!fs::exists(end.file)) {
    throw Error(ErrorKind::usage, flag + " '" + end.file + "' does not exist");
  }
  return end;
}

// The x_T of a noise-file end: its row, checked against the model's image shape.
torch::Tensor noise_row(const End& end, const Pipeline& pipeline, const std::string& flag) {
  const c10::IValue value = read_pickle_file(end.file, flag + " noise file '" + end.file + "'");
  const std::vector<int64_t> shape = {pipeline.channels(), pipeline.height(), pipeline.width()};
  if (!value.isTensor() || value.toTensor().dim() != 4 ||
      value.toTensor().sizes().slice(1) != c10::IntArrayRef(shape)) {
    throw Error(ErrorKind::usage, flag + " '" + end.file + "' does not hold x_T of this model's " +
                                      "images, a tensor [N, " + std::to_string(shape[0]) + ", " +
                                      std::to_string(shape[1]) + ", " + std::to_string(shape[2]) +
                                      "] (as ddpm invert writes)");
  }
  const torch::Tensor noise = value.toTensor();
  if (end.row < 0 || end.row >= noise.size(0)) {
    throw Error(ErrorKind::usage, flag + " '" + end.file + "': the file has rows 0 to " +
                                      std::to_string(noise.size(0) - 1) + ", not " +
                                      std::to_string(end.row));
  }
  return noise[end.row].to(torch::kFloat32);
}

// Spherical interpolation between a and b (flattened), at fraction t.
torch::Tensor slerp(const torch::Tensor& a, const torch::Tensor& b, double t) {
  const auto x = a.flatten().to(torch::kFloat64), y = b.flatten().to(torch::kFloat64);
  const double cosine =
      (x.dot(y) / (x.norm() * y.norm())).clamp(-1.0, 1.0).item<double>();
  const double theta = std::acos(cosine);
  if (theta < 1e-6) return (a * (1.0 - t) + b * t);
  const double s = std::sin(theta);
  return (a.to(torch::kFloat64) * (std::sin((1.0 - t) * theta) / s) +
          b.to(torch::kFloat64) * (std::sin(t * theta) / s))
      .to(torch::kFloat32);
}

}  // namespace

int run_invert(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm invert",
      "DDIM inversion: maps images to the x_T from which deterministic DDIM (eta 0) with the "
      "same steps generates them again, and writes them as one tensor [N, C, H, W] (torch.save "
      "format) for `ddpm sample --noise FILE --sampler ddim --steps N`. Images are read as "
      "training data is (resized and centre-cropped to the model's size when they differ).");
  add_chain_options(options);
  options.add_options()("images", "an image file or a folder of them (rows in sorted order)",
                        cxxopts::value<std::string>())(
      "o,out", "the tensor file to write (.pt)", cxxopts::value<std::string>());
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("images") || !arguments.count("out")) {
    throw Error(ErrorKind::usage, "ddpm invert needs --checkpoint, --images PATH and --out FILE.pt");
  }
  const std::vector<std::string> files =
      image_files(arguments["images"].as<std::string>(), "--images");
  const fs::path out = arguments["out"].as<std::string>();
  refuse_existing(out, arguments.count("overwrite") > 0);
  const Pipeline pipeline = load_pipeline(arguments);
  const torch::Tensor x_T = invert_files(pipeline, files, arguments);
  make_folder_of(out);
  write_pickle_file(out, c10::IValue(x_T));
  for (size_t k = 0; k < files.size(); ++k) log::info("row " + std::to_string(k) + ": " + files[k]);
  log::info("wrote x_T of " + std::to_string(files.size()) + " images to " + out.string() +
            "; reconstruct with ddpm sample --noise " + out.string() + " --sampler ddim --steps " +
            std::to_string(arguments["steps"].as<int>()) + " --num " +
            std::to_string(files.size()));
  return 0;
}

int run_interpolate(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm interpolate",
      "Frames between two images: both are inverted with DDIM (or taken from rows of a noise "
      "file of ddpm invert), their x_T interpolated along a great circle (slerp) and every "
      "frame decoded with DDIM; writes frame_000.png, ... in order, each with its fraction in "
      "its metadata.");
  add_chain_options(options);
  options.add_options()(
      "from", "the first image, or a row of a noise file of ddpm invert: FILE.pt:ROW",
      cxxopts::value<std::string>())(
      "to", "the last image, or FILE.pt:ROW", cxxopts::value<std::string>())(
      "frames", "frames, both ends included (>= 2)", cxxopts::value<int>()->default_value("8"))(
      "o,out", "output folder", cxxopts::value<std::string>())(
      "grid", "also write the frames as one strip to this PNG", cxxopts::value<std::string>());
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("from") || !arguments.count("to") || !arguments.count("out")) {
    throw Error(ErrorKind::usage,
                "ddpm interpolate needs --checkpoint, --from IMAGE, --to IMAGE and --out DIR");
  }
  const int frames = arguments["frames"].as<int>();
  if (frames < 2) throw Error(ErrorKind::usage, "--frames must be >= 2 (both ends included)");
  const std::vector<End> ends = {parse_end(arguments["from"].as<std::string>(), "--from"),
                                 parse_end(arguments["to"].as<std::string>(), "--to")};
  const fs::path out = arguments["out"].as<std::string>();
  const bool overwrite = arguments.count("overwrite") > 0;
  std::vector<fs::path> files;
  for (int k = 0; k < frames; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "frame_%03d.png", k);
    files.push_back(out / name);
  }
  if (arguments.count("grid")) files.emplace_back(arguments["grid"].as<std::string>());
  for (const fs::path& file : files) refuse_existing(file, overwrite);
  const Pipeline pipeline = load_pipeline(arguments);
  std::vector<torch::Tensor> ends_x_T;
  for (size_t k = 0; k < 2; ++k) {
    const End& end = ends[k];
    ends_x_T.push_back(end.noise ? noise_row(end, pipeline, k == 0 ? "--from" : "--to")
                                 : invert_files(pipeline, {end.file}, arguments)[0]);
  }
  const std::string from = ends[0].noise ? ends[0].file + ":" + std::to_string(ends[0].row)
                                         : ends[0].file;
  const std::string to = ends[1].noise ? ends[1].file + ":" + std::to_string(ends[1].row)
                                       : ends[1].file;
  std::vector<float> path;
  for (int k = 0; k < frames; ++k) {
    const torch::Tensor frame =
        slerp(ends_x_T[0], ends_x_T[1], double(k) / (frames - 1)).contiguous();
    path.insert(path.end(), frame.data_ptr<float>(), frame.data_ptr<float>() + frame.numel());
  }
  SampleRequest request = chain_request(arguments, frames);
  request.initial_noise = std::move(path);
  const torch::Tensor images = pipeline.generate_tensor(request);
  for (const fs::path& file : files) make_folder_of(file);
  for (int k = 0; k < frames; ++k) {
    write_png(files[k], tensor_to_image(images[k]),
              {{"checkpoint", pipeline.source_path()},
               {"from", from},
               {"to", to},
               {"fraction", nlohmann::json(double(k) / (frames - 1)).dump()},
               {"sampler", "ddim"},
               {"steps", std::to_string(arguments["steps"].as<int>())}});
  }
  if (arguments.count("grid")) write_png(files.back(), make_grid(images, frames), {});
  log::info("wrote " + std::to_string(frames) + " frames from " + from + " to " + to +
            " to " + out.string());
  return 0;
}

}  // namespace ddpm::cli
