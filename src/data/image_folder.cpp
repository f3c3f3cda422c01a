// The folder scan; see image_folder.h.
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "ddpm/error.h"

namespace ddpm {
namespace fs = std::filesystem;

bool has_image_extension(const fs::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* known : {".png", ".jpg", ".jpeg", ".bmp", ".tga", ".gif"}) {
    if (extension == known) return true;
  }
  return false;
}

std::vector<fs::path> scan_image_folder(const fs::path& folder, int64_t max_files) {
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
  std::vector<fs::path> files;
  try {
    for (fs::recursive_directory_iterator
             it(folder, fs::directory_options::follow_directory_symlink),
         end;
         it != end; ++it) {
      if (!has_image_extension(it->path()) || !it->is_regular_file()) continue;
      if (static_cast<int64_t>(files.size()) == max_files) {
        throw config_error("data.max_files",
                           "image folder '" + folder.string() + "' holds more than " +
                               std::to_string(max_files) +
                               " image files, the limit (its list takes about 0.5 KB of memory "
                               "per file); raise data.max_files if this folder is meant, or "
                               "point data.path at a smaller one");
      }
      files.push_back(it->path());
    }
  } catch (const fs::filesystem_error& failure) {
    throw Error(ErrorKind::runtime, "cannot list image folder '" + folder.string() +
                                        "': " + failure.what() + "; check its permissions");
  }
  if (files.empty()) {
    throw Error(ErrorKind::runtime,
                "image folder '" + folder.string() +
                    "' holds no image files (.png .jpg .jpeg .bmp .tga .gif, searched "
                    "recursively); check data.path");
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace ddpm
