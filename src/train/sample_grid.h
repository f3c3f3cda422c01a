// The sample grids a training run writes: the EMA model sampled with a fast sampler (DDIM,
// 50 steps, eta 0) from a fixed seed, so grids of different steps show the same noise.
#pragma once

#include <filesystem>

#include "config/config.h"
#include "diffusion/schedule.h"
#include "model/unet.h"

namespace ddpm {

// samples/step_000001000.png
std::filesystem::path sample_grid_file(const std::filesystem::path& run_dir, int64_t step);

// Samples min(sample.num_images, 64) images with seed sample.seed and writes them as one PNG
// grid, with the step and sampler in its text metadata.
void write_sample_grid(UNet& model, const NoiseSchedule& schedule, const Config& config,
                       const std::filesystem::path& file, int64_t step);

}  // namespace ddpm
