// Sampling a class-conditional model: which class each image gets, and classifier-free guidance
// (Ho & Salimans 2022). With guidance W, the network's output is
//     out = out_u + W * (out_c - out_u)
// as diffusers writes it (noise_pred_uncond + guidance_scale * (noise_pred_cond -
// noise_pred_uncond)), where out_c is the output for the image's class and out_u for "no
// class". W = 1 is the conditional model alone, W = 0 the unconditional one, W > 1 pushes the
// samples further towards their class. Guiding the output equals guiding eps for every
// prediction type: eps is affine in the output at a fixed x_t (prediction.h), and the weights
// 1 - W and W sum to 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "base/precision.h"
#include "config/config.h"
#include "diffusion/loss.h"
#include "model/network.h"
#include "model/unet.h"

namespace ddpm {

// The predictor for a batch whose images have the classes `labels` ([B] int64 on any device;
// undefined for an unconditional model). W = 1 and W = 0 run one forward pass of B images;
// any other W one pass of 2B images (conditional and unconditional together), never two.
// In bf16 or fp16 (sample.precision) the passes run under autocast and their output comes back
// in x_t's dtype.
// A network that does not take autocast (a compiled package) computes in its own precision,
// whatever `precision` says. The predictor calls `network`, which must outlive it.
EpsilonPredictor guided_predictor(Network& network, const torch::Tensor& labels, double guidance,
                                  Precision precision = Precision::fp32);
// The same for our UNet run eagerly; the predictor holds the model.
EpsilonPredictor guided_predictor(UNet& model, const torch::Tensor& labels, double guidance,
                                  Precision precision = Precision::fp32);

// The images one network call of guided_predictor takes for a batch of `images`: twice as many
// with guidance other than 0 and 1.
int64_t network_batch(int64_t images, double guidance);

// The class of each of `count` images: the `classes` in turn, evenly, in runs of consecutive
// images (image k gets classes[k * classes.size() / count]), so a grid gets one row per class.
std::vector<int64_t> classes_in_turn(const std::vector<int64_t>& classes, int64_t count);

// Every class of a model, 0 .. model.num_classes - 1 (none for an unconditional model).
std::vector<int64_t> all_classes(const ModelConfig& model);

// Entries first .. first + count - 1 of `labels` as a CPU int64 tensor; undefined when
// `labels` is empty (an unconditional model).
torch::Tensor label_slice(const std::vector<int64_t>& labels, int64_t first, int64_t count);

// A --class value: one of data.classes by name, else an index 0 .. model.num_classes - 1.
// Throws ddpm::Error (usage) listing the classes for anything else, and for a model without
// classes.
int64_t resolve_class(const std::string& value, const Config& config);

// The name of class `index`: data.classes[index], or the index when the config names none.
std::string class_name(const Config& config, int64_t index);

// The classes a sampling request draws.
struct SampleClasses {
  std::vector<int64_t> labels;    // the class of each image; empty for an unconditional model
  std::vector<int64_t> classes;   // the distinct classes sampled, in the order asked for
  bool subfolders = false;        // several classes: out/<class name>/sample_k.png
};

// The class of each of `num_images` images. `requested`: the classes asked for (`ddpm sample
// --class` values, names or indices); empty: every class in turn. Throws ddpm::Error (usage)
// for a class on an unconditional model, an unknown class, and sample.guidance other than 1 on
// an unconditional model.
SampleClasses plan_sample_classes(const std::vector<std::string>& requested, const Config& config,
                                  int64_t num_images);

}  // namespace ddpm
