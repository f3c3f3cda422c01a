// Class folders as labelled training data; see class_folders.h.
#include "data/class_folders.h"

#include <algorithm>

#include "data/image_folder.h"
#include "ddpm/error.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

std::string list_names(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i == 12 && names.size() > 14) {
      return text + ", ... (" + std::to_string(names.size()) + " in all)";
    }
    text += (i ? ", " : "") + names[i];
  }
  return "[" + text + "]";
}

}  // namespace

ClassFolders scan_class_folders(const fs::path& folder, int64_t max_files) {
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    scan_image_folder(folder);  // throws its message for a missing path or a file
  }
  std::vector<fs::path> class_folders;
  std::vector<fs::path> loose;
  ClassFolders result;
  try {
    for (const fs::directory_entry& entry :
         fs::directory_iterator(folder, fs::directory_options::follow_directory_symlink)) {
      if (entry.is_directory()) {
        class_folders.push_back(entry.path());
      } else if (has_image_extension(entry.path())) {
        loose.push_back(entry.path());
      } else if (entry.is_regular_file()) {
        result.report.pass_over(entry.path());
      }
    }
  } catch (const fs::filesystem_error& failure) {
    throw Error(ErrorKind::runtime, "cannot list image folder '" + folder.string() +
                                        "': " + failure.what() + "; check its permissions");
  }
  if (!loose.empty()) {
    std::sort(loose.begin(), loose.end());
    throw Error(ErrorKind::runtime,
                "data.labels is folders, but " + std::to_string(loose.size()) +
                    " image(s) lie directly in '" + folder.string() + "' (e.g. '" +
                    loose.front().filename().string() +
                    "') and so have no class; move each into the subfolder of its class, or "
                    "set data.labels=none to train without classes");
  }
  if (class_folders.empty()) {
    throw Error(ErrorKind::runtime,
                "data.labels is folders, but '" + folder.string() +
                    "' has no subfolders; put each class's images into a subfolder named "
                    "after the class, or set data.labels=none");
  }
  std::sort(class_folders.begin(), class_folders.end());
  for (const fs::path& class_folder : class_folders) {
    const std::string name = class_folder.filename().string();
    std::vector<fs::path> files;
    try {
      ImageFolderScan scan = scan_image_folder_report(
          class_folder, max_files - static_cast<int64_t>(result.files.size()));
      files = std::move(scan.images);
      scan.images.clear();
      result.report.add(scan);
    } catch (const Error& error) {
      if (error.kind() == ErrorKind::config) {  // over data.max_files, counting every class
        throw config_error("data.max_files", "the class folders of '" + folder.string() +
                                                 "' hold more than " + std::to_string(max_files) +
                                                 " image files, the limit; raise data.max_files "
                                                 "if this folder is meant");
      }
      throw Error(ErrorKind::runtime,
                  "class folder '" + class_folder.string() + "' (class " +
                      std::to_string(result.names.size()) + " of data.path '" + folder.string() +
                      "') holds no image files (" + kImageExtensionsText + "); add its "
                      "images or remove the folder");
    }
    const auto label = static_cast<int64_t>(result.names.size());
    result.names.push_back(name);
    result.counts.push_back(static_cast<int64_t>(files.size()));
    for (fs::path& file : files) {
      result.files.push_back(std::move(file));
      result.labels.push_back(label);
    }
  }
  return result;
}

Config with_class_labels(Config config, const ClassFolders* folders) {
  DataConfig& data = config.data;
  ModelConfig& model = config.model;
  if (data.labels == LabelSource::none) {
    if (model.num_classes > 0) {
      throw config_error("model.num_classes",
                         "is " + std::to_string(model.num_classes) +
                             ", a class-conditional model, but data.labels is none; set "
                             "data.labels=folders to train on the data folder's classes, or "
                             "model.num_classes=0");
    }
    return config;
  }
  if (folders == nullptr) {
    throw Error(ErrorKind::runtime, "with_class_labels: data.labels folders needs the folders");
  }
  if (!data.classes.empty() && data.classes != folders->names) {
    throw config_error("data.classes",
                       "the run was set up for the classes " + list_names(data.classes) +
                           ", but data.path '" + data.path + "' has the class folders " +
                           list_names(folders->names) +
                           "; point --data at the folder the run was trained on (a resumed "
                           "run and its checkpoints keep their classes), or start a new run");
  }
  const auto count = static_cast<int>(folders->names.size());
  if (model.num_classes != 0 && model.num_classes != count) {
    throw config_error("model.num_classes",
                       "is " + std::to_string(model.num_classes) + ", but data.path '" +
                           data.path + "' has " + std::to_string(count) +
                           " class folders; set it to 0 (from the data) or to " +
                           std::to_string(count));
  }
  data.classes = folders->names;
  model.num_classes = count;
  validate(config);
  return config;
}

std::string describe_classes(const ClassFolders& folders) {
  std::string text;
  for (size_t i = 0; i < folders.names.size(); ++i) {
    text += (i ? ", " : "") + folders.names[i] + ": " + std::to_string(folders.counts[i]);
  }
  return text;
}

}  // namespace ddpm
