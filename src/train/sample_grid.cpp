// Training-time sample grids; see sample_grid.h.
#include "train/sample_grid.h"

#include <cmath>
#include <cstdio>

#include "diffusion/generation.h"
#include "diffusion/guidance.h"
#include "formats/image_io.h"
#include "formats/image_tensor.h"

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
  SampleSettings settings = sample_settings(config);
  settings.solver.kind = SamplerKind::ddim;
  settings.solver.steps = static_cast<int>(std::min<int64_t>(kGridSteps, schedule.timesteps()));
  settings.solver.eta = 0.0;
  settings.solver.variance = SamplerOptions{}.variance;
  settings.solver.spacing = SamplerOptions{}.spacing;
  const int count = std::min(config.sample.num_images, kGridMaxImages);
  // A class-conditional model: the classes in turn, guided as ddpm sample would.
  const SampleInputs inputs{classes_in_turn(all_classes(config.model), count), {}};
  const torch::Tensor images = sample_batch(model, schedule, settings, inputs, 0, count);
  const int columns = static_cast<int>(std::ceil(std::sqrt(double(count))));
  write_png(file, make_grid(images, columns),
            {{"step", std::to_string(step)},
             {"sampler", "ddim"},
             {"steps", std::to_string(settings.solver.steps)},
             {"eta", "0"},
             {"seed", std::to_string(config.sample.seed)}});
}

}  // namespace ddpm
