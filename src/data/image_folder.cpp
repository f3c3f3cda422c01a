// The folder scan; see image_folder.h.
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "ddpm/error.h"

namespace ddpm {
namespace fs = std::filesystem;

namespace {

std::string lower_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension;
}

}  // namespace

void ImageFolderScan::pass_over(const fs::path& file) {
  const std::string extension = lower_extension(file);
  ++passed_over[extension];
  std::vector<std::string>& names = examples[extension];
  if (names.size() < 3) names.push_back(file.filename().string());
}

bool has_image_extension(const fs::path& path) {
  const std::string extension = lower_extension(path);
  for (const char* known :
       {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif", ".webp", ".tif", ".tiff"}) {
    if (extension == known) return true;
  }
  return false;
}

std::vector<fs::path> scan_image_folder(const fs::path& folder, int64_t max_files) {
  return scan_image_folder_report(folder, max_files).images;
}

void ImageFolderScan::add(const ImageFolderScan& other) {
  images.insert(images.end(), other.images.begin(), other.images.end());
  for (const auto& [format, count] : other.formats) formats[format] += count;
  for (const auto& [extension, count] : other.passed_over) passed_over[extension] += count;
  for (const auto& [extension, names] : other.examples) {
    std::vector<std::string>& mine = examples[extension];
    for (const std::string& name : names) {
      if (mine.size() < 3) mine.push_back(name);
    }
  }
}

std::string describe_scan(const ImageFolderScan& scan, const std::string& where) {
  int64_t images = 0;
  for (const auto& entry : scan.formats) images += entry.second;
  std::string text = std::to_string(images) + " images in '" + where + "'";
  bool first = true;
  for (const auto& [format, count] : scan.formats) {
    text += (first ? " (" : ", ") + format + " " + std::to_string(count);
    first = false;
  }
  if (!scan.formats.empty()) text += ")";
  int64_t skipped = 0;
  for (const auto& entry : scan.passed_over) skipped += entry.second;
  if (skipped == 0) return text;
  text += "; passed over " + std::to_string(skipped) + " other file" + (skipped == 1 ? "" : "s") +
          ":";
  first = true;
  for (const auto& [extension, count] : scan.passed_over) {
    text += std::string(first ? " " : ", ") + (extension.empty() ? "no extension" : extension) +
            " " + std::to_string(count) + " (";
    const std::vector<std::string>& names = scan.examples.at(extension);
    for (size_t i = 0; i < names.size(); ++i) text += (i ? ", " : "") + names[i];
    text += count > static_cast<int64_t>(names.size()) ? ", ...)" : ")";
    first = false;
  }
  return text;
}

ImageFolderScan scan_image_folder_report(const fs::path& folder, int64_t max_files) {
  std::error_code error;
  if (!fs::exists(folder, error)) {
    throw Error(ErrorKind::runtime,
                "image folder '" + folder.string() +
                    "' does not exist; set data.path to a folder of images (for "
                    "Fashion-MNIST, run python3 scripts/prepare_fashion_mnist.py)");
  }
  if (!fs::is_directory(folder, error)) {
    throw Error(ErrorKind::runtime,
                "data.path '" + folder.string() +
                    "' is not a folder; point it at a folder that holds the training images");
  }
  ImageFolderScan scan;
  std::vector<fs::path>& files = scan.images;
  try {
    for (fs::recursive_directory_iterator
             it(folder, fs::directory_options::follow_directory_symlink),
         end;
         it != end; ++it) {
      if (!it->is_regular_file()) continue;
      if (!has_image_extension(it->path())) {
        scan.pass_over(it->path());
        continue;
      }
      if (static_cast<int64_t>(files.size()) == max_files) {
        throw config_error("data.max_files",
                           "image folder '" + folder.string() + "' holds more than " +
                               std::to_string(max_files) +
                               " image files, the limit (its list takes about 0.5 KB of memory "
                               "per file); raise data.max_files if this folder is meant, or "
                               "point data.path at a smaller one");
      }
      files.push_back(it->path());
      std::string format = lower_extension(it->path()).substr(1);
      ++scan.formats[format == "jpeg" ? "jpg" : format == "tiff" ? "tif" : format];
    }
  } catch (const fs::filesystem_error& failure) {
    throw Error(ErrorKind::runtime, "cannot list image folder '" + folder.string() +
                                        "': " + failure.what() + "; check its permissions");
  }
  if (files.empty()) {
    std::string others;
    if (!scan.passed_over.empty()) others = ": " + describe_scan(scan, folder.string());
    throw Error(ErrorKind::runtime,
                "image folder '" + folder.string() +
                    "' holds no image files (" + kImageExtensionsText +
                    ", searched recursively)" + others + "; check data.path");
  }
  std::sort(files.begin(), files.end());
  return scan;
}

}  // namespace ddpm
