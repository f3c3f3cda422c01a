// Training-time sample grids; see sample_grid.h.
#include "ddpm/sample_grid.h"

#include <cmath>
#include <cstdio>

#include "ddpm/guidance.h"
#include "ddpm/image_io.h"
#include "ddpm/sampler.h"

namespace ddpm {

namespace {
constexpr int kGridSteps = 50;
constexpr int kGridMaxImages = 64;
}  // namespace

std::filesystem::path sample_grid_file(const std::filesystem::path& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%09lld.png", static_cast<long long>(step));
  return run_dir / "samples" / name;
}

void write_sample_grid(UNet& model, const NoiseSchedule& schedule, const Config& config,
                       const std::filesystem::path& file, int64_t step) {
  const bool was_training = model->is_training();
  model->eval();
  SamplerOptions options;
  options.kind = SamplerKind::ddim;
  options.steps = static_cast<int>(std::min<int64_t>(kGridSteps, schedule.timesteps()));
  options.eta = 0.0;
  options.clip_denoised = config.sample.clip_denoised;
  options.prediction = prediction_from_name(config.diffusion.prediction);
  const int count = std::min(config.sample.num_images, kGridMaxImages);
  // A class-conditional model: the classes in turn, guided as ddpm sample would.
  const EpsilonPredictor predictor = guided_predictor(
      model, label_slice(classes_in_turn(all_classes(config.model), count), 0, count),
      config.sample.guidance, precision_from_name(config.sample.precision, "sample.precision"));
  torch::Tensor images;
  {
    torch::InferenceMode inference;
    images = sample_images(predictor, schedule, options, 0, count,
                           {config.data.channels, config.data.height, config.data.width},
                           config.sample.seed, schedule.device());
  }
  model->train(was_training);
  const int columns = static_cast<int>(std::ceil(std::sqrt(double(count))));
  write_png(file, make_grid(images.cpu(), columns),
            {{"step", std::to_string(step)},
             {"sampler", "ddim"},
             {"steps", std::to_string(options.steps)},
             {"eta", "0"},
             {"seed", std::to_string(config.sample.seed)}});
}

}  // namespace ddpm
