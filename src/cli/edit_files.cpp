// Input image and mask files; see edit_files.h.
#include "edit_files.h"

#include <filesystem>
#include <map>

#include "base/log.h"
#include "data/image_folder.h"
#include "ddpm/error.h"

namespace ddpm::cli {

namespace fs = std::filesystem;

std::vector<std::string> image_files(const std::string& path, const std::string& flag) {
  std::error_code error;
  if (!fs::exists(path, error)) {
    throw Error(ErrorKind::usage, flag + " '" + path + "' does not exist");
  }
  if (!fs::is_directory(path, error)) {
    if (!has_image_extension(path)) {
      throw Error(ErrorKind::usage, flag + " '" + path +
                                        "' is not an image file (" + kImageExtensionsText +
                                        ") or a folder of them");
    }
    return {path};
  }
  std::vector<std::string> files;
  try {
    const ImageFolderScan scan = scan_image_folder_report(path);
    log::info(flag + ": " + describe_scan(scan, path));
    for (const fs::path& file : scan.images) files.push_back(file.string());
  } catch (const Error& scan_error) {
    throw Error(ErrorKind::usage, flag + ": " + scan_error.what());
  }
  return files;
}

std::vector<std::string> paired_masks(const std::vector<std::string>& images,
                                      const std::string& mask) {
  std::error_code error;
  if (!fs::is_directory(mask, error)) {
    image_files(mask, "--mask");  // checks it is an image
    return std::vector<std::string>(images.size(), mask);
  }
  std::map<std::string, std::vector<std::string>> by_name;  // file name without extension
  for (const std::string& file : image_files(mask, "--mask")) {
    by_name[fs::path(file).stem().string()].push_back(file);
  }
  std::vector<std::string> masks;
  for (const std::string& image : images) {
    const std::string name = fs::path(image).stem().string();
    const auto found = by_name.find(name);
    if (found == by_name.end()) {
      throw Error(ErrorKind::usage, "--mask folder '" + mask + "' has no mask for '" + image +
                                        "' (a file named " + name + ".png, .jpg, ...)");
    }
    if (found->second.size() > 1) {
      throw Error(ErrorKind::usage, "--mask folder '" + mask + "' has " +
                                        std::to_string(found->second.size()) +
                                        " masks named " + name + " for '" + image +
                                        "'; keep one");
    }
    masks.push_back(found->second.front());
  }
  return masks;
}

}  // namespace ddpm::cli
