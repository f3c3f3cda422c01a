// Where `ddpm sample` writes: each image's PNG (one subfolder per class when a class-conditional
// model draws several), and the grid, with one row per class. Which class each image gets is
// the request's plan (Pipeline::plan, ddpm.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ddpm/ddpm.h"
#include "formats/image_io.h"

namespace ddpm::cli {

class SampleFiles {
 public:
  // `class_names`: the model's classes by index (Pipeline::class_names).
  SampleFiles(std::filesystem::path out, const SamplePlan& plan,
              std::vector<std::string> class_names);
  std::filesystem::path image(int64_t index) const;  // out[/class]/sample_00000.png
  std::vector<std::filesystem::path> all() const;    // every image's, in order

 private:
  std::filesystem::path out_;
  const SamplePlan& plan_;
  std::vector<std::string> class_names_;
};

// All images ([N, C, H, W] in [-1, 1]): one row per class of plan.classes (padded with black
// where a class has fewer images), or a square grid without classes.
Image sample_grid_image(const torch::Tensor& images, const SamplePlan& plan);

}  // namespace ddpm::cli
