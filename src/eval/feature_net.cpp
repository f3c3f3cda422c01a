// Loading and running the feature network, and the features of a folder; see feature_net.h.
#include "eval/feature_net.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include "base/log.h"
#include "data/image_folder.h"
#include "ddpm/error.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"
#include "formats/image_tensor.h"

namespace ddpm {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMaxExamples = 5;
constexpr int kMaxInputSide = 4096;

Error net_error(const fs::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "feature network '" + path.string() + "' " + reason);
}

// FNV-1a, 64 bit: a stable, dependency-free fingerprint of the file (not a security measure).
uint64_t fnv1a64(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char byte : bytes) {
    hash ^= static_cast<unsigned char>(byte);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

Error no_classifier(const fs::path& path) {
  return net_error(path, "has no classifier (a classify method and a class_names attribute); "
                         "label the images by class folders instead, or make the network with "
                         "scripts/train_feature_net.py");
}

std::string shape_text(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << sizes;
  return out.str();
}

int int_attribute(const torch::jit::Module& module, const fs::path& path, const char* name,
                  int low, int high) {
  const std::string how =
      "; a feature network declares its input with the int attributes input_channels, "
      "input_height and input_width (see scripts/train_feature_net.py)";
  if (!module.hasattr(name)) {
    throw net_error(path, std::string("has no attribute '") + name + "'" + how);
  }
  const c10::IValue value = module.attr(name);
  if (!value.isInt() || value.toInt() < low || value.toInt() > high) {
    const std::string found =
        value.isInt() ? std::to_string(value.toInt()) : "a value of type " + value.tagKind();
    throw net_error(path, std::string("has attribute ") + name + " = " + found +
                              ", expected an int in [" + std::to_string(low) + ", " +
                              std::to_string(high) + "]" + how);
  }
  return static_cast<int>(value.toInt());
}

}  // namespace

std::vector<fs::path> default_feature_net_candidates() {
  std::vector<fs::path> candidates = {kDefaultFeatureNet};
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    const fs::path prefix = self.parent_path().parent_path();
    candidates.push_back(prefix / kDefaultFeatureNet);
    candidates.push_back(prefix / "share/ddpm/feature-nets" /
                         fs::path(kDefaultFeatureNet).filename());
  }
  return candidates;
}

fs::path find_default_feature_net() {
  for (const fs::path& candidate : default_feature_net_candidates()) {
    std::error_code error;
    if (fs::is_regular_file(candidate, error)) return candidate;
  }
  return {};
}

std::string default_feature_net_missing(const std::string& context) {
  std::string searched;
  for (const fs::path& candidate : default_feature_net_candidates()) {
    searched += (searched.empty() ? "'" : ", '") + candidate.string() + "'";
  }
  return context + ", and the default feature network was not found (looked for " + searched +
         "). The repository ships it as " + kDefaultFeatureNet +
         ": run from the repository's folder, or pass its path; to make it again, "
         ".venv/bin/python scripts/train_feature_net.py (Fashion-MNIST); for RGB data, export "
         "Inception-v3 with .venv/bin/python scripts/export_inception.py";
}

FeatureNet::FeatureNet(const fs::path& path, torch::Device device) : path_(path), device_(device) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    throw net_error(path, "does not exist (or is not a file); make one with "
                          "scripts/train_feature_net.py (Fashion-MNIST) or "
                          "scripts/export_inception.py, or pass --features FILE");
  }
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) throw net_error(path, "cannot be read; check its permissions");
  try {
    std::istringstream stream(bytes);
    module_ = torch::jit::load(stream, device);
  } catch (const c10::Error& failure) {
    throw net_error(path, "is not a TorchScript module saved with torch.jit.save (truncated or "
                          "corrupt?): " + std::string(failure.what_without_backtrace()));
  }
  if (!module_.find_method("forward")) throw net_error(path, "has no forward method");
  module_.eval();
  input_.channels = int_attribute(module_, path, "input_channels", 1, 3);
  if (input_.channels == 2) {
    throw net_error(path, "declares input_channels = 2; it must be 1 (gray) or 3 (RGB)");
  }
  input_.height = int_attribute(module_, path, "input_height", 1, kMaxInputSide);
  input_.width = int_attribute(module_, path, "input_width", 1, kMaxInputSide);
  if (module_.find_method("classify") && module_.hasattr("class_names")) {
    const c10::IValue names = module_.attr("class_names");
    if (!names.isList()) {
      throw net_error(path, "has a class_names attribute of type " + names.tagKind() +
                                "; it must be a list of strings, one per class of classify");
    }
    for (const c10::IValue& name : names.toListRef()) {
      if (!name.isString()) {
        throw net_error(path, "has a class_names entry of type " + name.tagKind() +
                                  "; it must be a list of strings, one per class of classify");
      }
      class_names_.push_back(name.toStringRef());
    }
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a64(bytes)));
  identifier_ = std::string("fnv1a64:") + hash + "/" + std::to_string(input_.channels) + "x" +
                std::to_string(input_.height) + "x" + std::to_string(input_.width);
}

torch::Tensor FeatureNet::features(const torch::Tensor& batch) {
  const int64_t count = batch.size(0);
  c10::IValue output;
  try {
    torch::InferenceMode inference;
    output = module_.forward({batch.to(device_, torch::kFloat32)});
  } catch (const c10::Error& failure) {
    throw net_error(path_, "failed on a batch of shape " + shape_text(batch.sizes()) + ": " +
                               std::string(failure.what_without_backtrace()));
  }
  const std::string rule =
      "; it must return one feature vector per image, a float tensor [N, D] (pool or flatten "
      "its last layer)";
  if (!output.isTensor()) {
    throw net_error(path_, "returns a " + output.tagKind() + ", not a tensor" + rule);
  }
  const torch::Tensor features = output.toTensor();
  if (features.dim() != 2 || features.size(0) != count || features.size(1) < 1) {
    throw net_error(path_, "returns shape " + shape_text(features.sizes()) + " for " +
                               std::to_string(count) + " images" + rule);
  }
  if (!features.is_floating_point()) {
    throw net_error(path_, "returns a tensor of " +
                               std::string(c10::toString(features.scalar_type())) + rule);
  }
  if (feature_dim_ != 0 && features.size(1) != feature_dim_) {
    throw net_error(path_, "returned " + std::to_string(feature_dim_) +
                               " features per image, then " + std::to_string(features.size(1)) +
                               rule);
  }
  feature_dim_ = features.size(1);
  if (!torch::isfinite(features).all().item<bool>()) {
    throw net_error(path_, "returned a non-finite feature (NaN or infinity)");
  }
  return features.to(torch::kCPU, torch::kFloat32).contiguous();
}

torch::Tensor FeatureNet::classify(const torch::Tensor& batch) {
  if (!has_classifier()) throw no_classifier(path_);
  c10::IValue output;
  try {
    torch::InferenceMode inference;
    output = module_.get_method("classify")({batch.to(device_, torch::kFloat32)});
  } catch (const c10::Error& failure) {
    throw net_error(path_, "failed to classify a batch of shape " + shape_text(batch.sizes()) +
                               ": " + std::string(failure.what_without_backtrace()));
  }
  const auto classes = static_cast<int64_t>(class_names_.size());
  if (!output.isTensor() || output.toTensor().dim() != 2 ||
      output.toTensor().size(0) != batch.size(0) || output.toTensor().size(1) != classes) {
    throw net_error(path_, "classify must return logits [N, " + std::to_string(classes) +
                               "] (one per entry of class_names); it returned " +
                               (output.isTensor() ? shape_text(output.toTensor().sizes())
                                                  : "a " + output.tagKind()));
  }
  return output.toTensor().argmax(1).to(torch::kCPU, torch::kInt64).contiguous();
}

FolderFeatures folder_features(const fs::path& folder, FeatureNet& net, int batch_size,
                               const FeatureProgress& progress, bool with_classes) {
  if (batch_size < 1) throw Error(ErrorKind::usage, "the batch size must be >= 1");
  if (with_classes && !net.has_classifier()) throw no_classifier(net.path());
  const ImageFolderScan scan = scan_image_folder_report(folder);
  log::info(describe_scan(scan, folder.string()));
  const std::vector<fs::path>& files = scan.images;
  const FeatureNetInput input = net.input();
  const int64_t total = static_cast<int64_t>(files.size());
  FolderFeatures result;
  std::optional<std::string> shape;
  fs::path first_file;
  bool mixed = false;
  std::vector<torch::Tensor> chunks, class_chunks;
  for (int64_t first = 0; first < total; first += batch_size) {
    const int64_t count = std::min<int64_t>(batch_size, total - first);
    std::vector<Image> images(count);
    std::vector<std::string> failures(count);
    at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        try {
          images[i] = read_image(files[first + i], input.channels);
        } catch (const Error& failure) {
          failures[i] = failure.what();
        }
      }
    });
    std::vector<torch::Tensor> tensors;
    for (int64_t i = 0; i < count; ++i) {
      if (!failures[i].empty()) {
        ++result.skipped;
        if (result.skipped_examples.size() < kMaxExamples) {
          result.skipped_examples.push_back(failures[i]);
        }
        continue;
      }
      const Image& image = images[i];
      const std::string own = std::to_string(image.height) + "x" + std::to_string(image.width) +
                              "x" + std::to_string(image.source_channels);
      if (!shape) {
        shape = own;
        first_file = files[first + i];
      } else if (!mixed && own != *shape) {
        mixed = true;
        result.mixed_example = "'" + first_file.string() + "' is " + *shape + ", '" +
                               files[first + i].string() + "' is " + own;
      }
      tensors.push_back(image_to_tensor(resize_and_crop(image, input.height, input.width)));
    }
    if (!tensors.empty()) {
      const torch::Tensor batch = torch::stack(tensors);
      chunks.push_back(net.features(batch));
      if (with_classes) class_chunks.push_back(net.classify(batch));
    }
    if (progress) progress(first + count, total);
  }
  if (chunks.empty()) {
    throw Error(ErrorKind::runtime, "image folder '" + folder.string() + "': none of its " +
                                        std::to_string(total) + " image files is readable (" +
                                        result.skipped_examples.front() + ")");
  }
  result.features = torch::cat(chunks);
  if (with_classes) result.classes = torch::cat(class_chunks);
  result.image_shape = mixed ? "mixed" : *shape;
  return result;
}

}  // namespace ddpm
