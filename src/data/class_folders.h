// Labelled training data: a folder whose immediate subfolders are the classes (data.labels
// folders), as torchvision's ImageFolder reads one. Classes are numbered in the order of their
// sorted folder names; each class's images are found recursively inside its folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/image_folder.h"

namespace ddpm {

struct ClassFolders {
  std::vector<std::string> names;               // the class folders' names, sorted
  std::vector<int64_t> counts;                  // images per class
  std::vector<std::filesystem::path> files;     // every image, sorted by path
  std::vector<int64_t> labels;                  // the class index of each file
  ImageFolderScan report;  // every class's formats and passed-over files (images: in `files`)
};

// Throws ddpm::Error (runtime) naming the path when the folder is missing or unreadable, when
// images lie directly in it (they would have no class), when it has no subfolder, or when a
// class folder holds no image; (config, naming data.max_files) when all the class folders
// together hold more than `max_files` images.
ClassFolders scan_class_folders(const std::filesystem::path& folder,
                                int64_t max_files = DataConfig{}.max_files);

// The config a run trains: with data.labels folders, data.classes and model.num_classes come
// from `folders`; a config (or a resumed run's) that already names other classes is refused,
// naming both lists. Unlabelled data with model.num_classes > 0 is refused too.
Config with_class_labels(Config config, const ClassFolders* folders);

// "0: 6000, 1: 6000, ...": each class with its number of images, for the log.
std::string describe_classes(const ClassFolders& folders);

}  // namespace ddpm
