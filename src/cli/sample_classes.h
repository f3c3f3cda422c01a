// `ddpm sample` on a class-conditional model: where each image's PNG goes (one subfolder per
// class when there are several), and the grid with one row per class. Which class each image
// gets is plan_sample_classes (guidance.h), shared with ddpm::Pipeline.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ddpm/config.h"
#include "ddpm/guidance.h"
#include "ddpm/image_io.h"

namespace ddpm::cli {

// The PNG of image `index`.
std::filesystem::path sample_file(const std::filesystem::path& out, const SampleClasses& plan,
                                  const Config& config, int64_t index);

// All images ([N, C, H, W] in [-1, 1]): one row per class of plan.classes (padded with black
// where a class has fewer images), or a square grid without classes.
Image sample_grid_image(const torch::Tensor& images, const SampleClasses& plan);

}  // namespace ddpm::cli
