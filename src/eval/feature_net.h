// The feature network of the quality metrics: a TorchScript module that maps a batch of images to
// one feature vector per image, and the run of it over a folder of images.
//
// The input convention, which scripts/train_feature_net.py and scripts/export_inception.py follow
// and any other network must follow too:
//  - the module has three int attributes: input_channels (1 or 3), input_height, input_width;
//  - forward(x) takes float32 [N, input_channels, input_height, input_width] with values in
//    [-1, 1] (the project's image scaling, pixel / 127.5 - 1); any other normalisation the
//    network wants (Inception's, a classifier's mean and std) happens inside forward;
//  - forward returns a floating tensor [N, D], D >= 1, the same D for every batch.
// Optionally, a classifier: a method classify(x) returning logits [N, K] and an attribute
// class_names (a list of K strings, the real data's class folder names). With it,
// `ddpm eval --per-class` labels generated images that have no class folders (the samples of an
// unconditional model) and reports per-class figures and the class balance.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace ddpm {

// The feature network `ddpm eval` and train.eval_every use unless told otherwise:
// Fashion-MNIST's, which the repository ships (made by scripts/train_feature_net.py).
inline constexpr const char* kDefaultFeatureNet = "data/feature-nets/fashion_mnist.pt";

// Where the default network is looked for, in order: kDefaultFeatureNet relative to the current
// folder; beside the running program's tree, BIN/../data/feature-nets/fashion_mnist.pt (a build
// folder inside the repository) and BIN/../share/ddpm/feature-nets/fashion_mnist.pt (an
// installed ddpm, the Docker image).
std::vector<std::filesystem::path> default_feature_net_candidates();
// The first candidate that is a file; empty when none is.
std::filesystem::path find_default_feature_net();
// The message for "none found": the places searched and what to do.
std::string default_feature_net_missing(const std::string& context);

struct FeatureNetInput {
  int channels = 0, height = 0, width = 0;
};

class FeatureNet {
 public:
  // Throws ddpm::Error (runtime) naming the file when it is missing, unreadable, not a
  // TorchScript module, or lacks a valid input_channels / input_height / input_width.
  FeatureNet(const std::filesystem::path& path, torch::Device device);

  const std::filesystem::path& path() const { return path_; }
  const FeatureNetInput& input() const { return input_; }
  torch::Device device() const { return device_; }
  // "fnv1a64:<16 hex digits>/<C>x<H>x<W>": a hash of the file's bytes and the declared input.
  // Stats files record it, so features of one network are never compared with another's.
  const std::string& identifier() const { return identifier_; }

  // `batch`: float [N, C, H, W] in [-1, 1] matching input(). Returns float32 [N, D] on the CPU.
  // Throws ddpm::Error naming the file when the output is not one vector per image, changes D
  // between calls, or holds a non-finite value.
  torch::Tensor features(const torch::Tensor& batch);

  // Whether the module has a classify method and a class_names attribute (see above).
  bool has_classifier() const { return !class_names_.empty(); }
  const std::vector<std::string>& class_names() const { return class_names_; }
  // `batch` as for features(). Returns int64 [N] on the CPU: each image's most likely class, an
  // index into class_names(). Throws ddpm::Error naming the file when the network has no
  // classifier or its logits are not [N, class_names().size()].
  torch::Tensor classify(const torch::Tensor& batch);

 private:
  std::filesystem::path path_;
  torch::Device device_;
  torch::jit::Module module_;
  FeatureNetInput input_;
  std::string identifier_;
  int64_t feature_dim_ = 0;  // 0 until the first batch
  std::vector<std::string> class_names_;  // empty without a classifier
};

// The features of the images of one folder.
struct FolderFeatures {
  torch::Tensor features;  // float32 [N, D] on the CPU: the readable images in scan order
  // int64 [N]: each image's class by the network's classifier (with_classes), else undefined.
  torch::Tensor classes;
  int64_t skipped = 0;     // unreadable files, left out
  std::vector<std::string> skipped_examples;  // the first few, as "path: reason"
  // The files' own size as "HxWxC" (C as stored: 1 gray, 3 RGB, ...) when every readable image
  // has the same; "mixed" otherwise, and then `mixed_example` names two files that differ.
  std::string image_shape;
  std::string mixed_example;
};

// Called after each batch with the images done so far and the total number of files.
using FeatureProgress = std::function<void(int64_t done, int64_t total)>;

// Every image file under `folder` (scan_image_folder), decoded to the network's channel count
// (read_image's conversion: gray is replicated to RGB, RGB becomes BT.601 luma), resized to its
// input with resize_and_crop (scale to cover, area filter when shrinking, centre crop), scaled
// to [-1, 1] and run through `net` in batches of `batch_size`. An unreadable file is skipped and
// counted, as in training. With `with_classes` (the network must have a classifier) each image's
// class is found too. Throws ddpm::Error naming the folder when it is missing, holds no images,
// or no readable one.
FolderFeatures folder_features(const std::filesystem::path& folder, FeatureNet& net,
                               int batch_size, const FeatureProgress& progress = {},
                               bool with_classes = false);

}  // namespace ddpm
