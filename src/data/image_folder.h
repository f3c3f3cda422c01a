// The images of a folder: the one folder scan that the loader (dataset.h), class folders
// (class_folders.h) and the evaluation's folders (feature_net.h) all use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "config/config.h"

namespace ddpm {

// Whether the file name ends in one of the image extensions scan_image_folder() takes.
bool has_image_extension(const std::filesystem::path& path);

// Every image file (.png .jpg .jpeg .bmp .tga .gif, any case) under `folder`, recursively,
// sorted. Only lists the folder, never opens a file. Throws ddpm::Error (runtime) naming the
// path when it is missing, not a folder, unreadable, or holds no image files, and (config,
// naming data.max_files) as soon as it has found more than `max_files`, so that the list's
// memory stays bounded.
std::vector<std::filesystem::path> scan_image_folder(const std::filesystem::path& folder,
                                                     int64_t max_files = DataConfig{}.max_files);

}  // namespace ddpm
