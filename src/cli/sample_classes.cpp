// Class choice, file layout and grid of `ddpm sample`; see sample_classes.h.
#include "sample_classes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ddpm/error.h"
#include "ddpm/guidance.h"

namespace ddpm::cli {

std::filesystem::path sample_file(const std::filesystem::path& out, const SampleClasses& plan,
                                  const Config& config, int64_t index) {
  char name[32];
  std::snprintf(name, sizeof name, "sample_%05lld.png", static_cast<long long>(index));
  if (!plan.subfolders) return out / name;
  return out / class_name(config, plan.labels[index]) / name;
}

Image sample_grid_image(const torch::Tensor& images, const SampleClasses& plan) {
  if (plan.classes.size() <= 1) {
    const int columns = static_cast<int>(std::ceil(std::sqrt(double(images.size(0)))));
    return make_grid(images, columns);
  }
  std::vector<std::vector<int64_t>> rows(plan.classes.size());
  for (size_t k = 0; k < plan.labels.size(); ++k) {
    const auto row = std::find(plan.classes.begin(), plan.classes.end(), plan.labels[k]) -
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
