// The files `ddpm sample --init/--mask`, `ddpm invert --images` and `ddpm interpolate` read:
// an image file or a folder of them (recursively, sorted, as training data is scanned), and
// masks paired with them by name. Everything is checked before anything is written.
#pragma once

#include <string>
#include <vector>

namespace ddpm::cli {

// The image files of `path` (a file, or a folder's images in sorted order). Throws ddpm::Error
// (usage, naming `flag`) for a path that is missing, not an image or holds no image.
std::vector<std::string> image_files(const std::string& path, const std::string& flag);

// The mask of every image: `mask` a file (the one mask of every image) or a folder holding, for
// each image, the image file of the same name but for the extension (a.png's mask may be
// a.png or a.jpg). Throws ddpm::Error (usage, naming --mask and the image) for a missing
// partner or two candidates.
std::vector<std::string> paired_masks(const std::vector<std::string>& images,
                                      const std::string& mask);

}  // namespace ddpm::cli
