// `ddpm sample` on a class-conditional model: which class each image gets (--class, or every
// class in turn), where its PNG goes (one subfolder per class when there are several), and the
// grid with one row per class.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ddpm/config.h"
#include "ddpm/image_io.h"

namespace ddpm::cli {

struct SampleClasses {
  std::vector<int64_t> labels;    // the class of each image; empty for an unconditional model
  std::vector<int64_t> classes;   // the distinct classes sampled, in the order asked for
  bool subfolders = false;        // several classes: out/<class name>/sample_k.png
};

// `requested`: the --class values (names or indices); empty: every class in turn. Throws
// ddpm::Error (usage) for --class on an unconditional model, an unknown class, and guidance
// other than 1 on an unconditional model.
SampleClasses plan_sample_classes(const std::vector<std::string>& requested, const Config& config,
                                  int64_t num_images);

// The PNG of image `index`.
std::filesystem::path sample_file(const std::filesystem::path& out, const SampleClasses& plan,
                                  const Config& config, int64_t index);

// All images ([N, C, H, W] in [-1, 1]): one row per class of plan.classes (padded with black
// where a class has fewer images), or a square grid without classes.
Image sample_grid_image(const torch::Tensor& images, const SampleClasses& plan);

}  // namespace ddpm::cli
