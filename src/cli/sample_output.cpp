// Where `ddpm sample` writes; see sample_output.h.
#include "sample_output.h"
#include "formats/image_tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace ddpm::cli {

SampleFiles::SampleFiles(std::filesystem::path out, const SamplePlan& plan,
                         std::vector<std::string> class_names)
    : out_(std::move(out)), plan_(plan), class_names_(std::move(class_names)) {}

std::filesystem::path SampleFiles::image(int64_t index) const {
  char name[32];
  std::snprintf(name, sizeof name, "sample_%05lld.png", static_cast<long long>(index));
  if (plan_.classes.size() <= 1) return out_ / name;  // several classes: a folder each
  return out_ / class_names_[plan_.image_classes[index]] / name;
}

std::vector<std::filesystem::path> SampleFiles::all() const {
  std::vector<std::filesystem::path> files;
  for (int64_t index = 0; index < plan_.num_images; ++index) files.push_back(image(index));
  return files;
}

Image sample_grid_image(const torch::Tensor& images, const SamplePlan& plan) {
  if (plan.classes.size() <= 1) {
    const int columns = static_cast<int>(std::ceil(std::sqrt(double(images.size(0)))));
    return make_grid(images, columns);
  }
  std::vector<std::vector<int64_t>> rows(plan.classes.size());
  for (size_t k = 0; k < plan.image_classes.size(); ++k) {
    const auto row = std::find(plan.classes.begin(), plan.classes.end(), plan.image_classes[k]) -
                     plan.classes.begin();
    rows[row].push_back(static_cast<int64_t>(k));
  }
  size_t columns = 1;
  for (const auto& row : rows) columns = std::max(columns, row.size());
  const torch::Tensor blank = torch::full_like(images[0], -1.0);
  std::vector<torch::Tensor> cells;
  for (const auto& row : rows) {
    for (size_t c = 0; c < columns; ++c) cells.push_back(c < row.size() ? images[row[c]] : blank);
  }
  return make_grid(torch::stack(cells), static_cast<int>(columns));
}

}  // namespace ddpm::cli
