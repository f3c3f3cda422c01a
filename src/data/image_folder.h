// The images of a folder: the one folder scan that the loader (dataset.h), class folders
// (class_folders.h) and the evaluation's folders (feature_net.h) all use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "config/config.h"

namespace ddpm {

// The extensions scan_image_folder() takes (any case), as messages list them.
inline constexpr const char* kImageExtensionsText =
    ".png .jpg .jpeg .bmp .tga .gif .webp .tif .tiff";

// Whether the file name ends in one of the image extensions scan_image_folder() takes.
bool has_image_extension(const std::filesystem::path& path);

// Every image file (kImageExtensionsText, any case) under `folder`, recursively, sorted. Only
// lists the folder, never opens a file. Throws ddpm::Error (runtime) naming the path when it is
// missing, not a folder, unreadable, or holds no image files, and (config,
// naming data.max_files) as soon as it has found more than `max_files`, so that the list's
// memory stays bounded.
std::vector<std::filesystem::path> scan_image_folder(const std::filesystem::path& folder,
                                                     int64_t max_files = DataConfig{}.max_files);

// What a scan found: the images (sorted), how many of each format, and the files it passed
// over, by extension ("" for none), with the first few names of each.
struct ImageFolderScan {
  std::vector<std::filesystem::path> images;
  std::map<std::string, int64_t> formats;       // "png" -> count (jpeg counts as jpg)
  std::map<std::string, int64_t> passed_over;   // ".txt" -> count
  std::map<std::string, std::vector<std::string>> examples;  // ".txt" -> up to 3 file names
  void add(const ImageFolderScan& other);       // for several folders (class folders)
  void pass_over(const std::filesystem::path& file);  // counts a file that is not an image
};

// scan_image_folder() with its report; the same errors.
ImageFolderScan scan_image_folder_report(const std::filesystem::path& folder,
                                         int64_t max_files = DataConfig{}.max_files);

// One line for the log: "60000 images in 'data/x' (png 59990, jpg 10); passed over 3 files:
// .txt 2 (a.txt, b.txt), no extension 1 (README)".
std::string describe_scan(const ImageFolderScan& scan, const std::string& where);

}  // namespace ddpm
