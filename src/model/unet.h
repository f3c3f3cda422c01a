// The epsilon-predictor: the UNet of the original DDPM (Ho et al. 2020), configurable in image
// channels, height and width, widths, depth and attention. With the CIFAR-10 recipe it has
// exactly 35,746,307 parameters; with the 256x256 recipe 113,673,219. Parameter names are those
// of diffusers' UNet2DModel (google/ddpm-cifar10-32 layout), so weights move between the two.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "config/config.h"
#include "model/unet_blocks.h"

namespace ddpm {

// One encoder level: num_res_blocks resnets (each followed by attention where configured),
// then a downsampler unless it is the last level. Pushes every output onto `skips`.
struct DownBlockImpl : torch::nn::Module {
  DownBlockImpl();
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb,
                        std::vector<torch::Tensor>& skips);
  torch::nn::ModuleList resnets, attentions, downsamplers;
};
TORCH_MODULE(DownBlock);

// resnet, attention, resnet at the lowest resolution.
struct MidBlockImpl : torch::nn::Module {
  MidBlockImpl(int64_t channels, int64_t embedding_channels, const ModelConfig& model);
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb);
  torch::nn::ModuleList resnets, attentions;
};
TORCH_MODULE(MidBlock);

// One decoder level: num_res_blocks + 1 resnets, each on [h, skip] concatenated along channels
// (and followed by attention where configured), then an upsampler unless it is level 0.
struct UpBlockImpl : torch::nn::Module {
  UpBlockImpl();
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb,
                        std::vector<torch::Tensor>& skips);
  torch::nn::ModuleList resnets, attentions, upsamplers;
};
TORCH_MODULE(UpBlock);

// The channels of the network's output: the image's, twice with model.learn_variance.
inline int64_t output_channels(const ModelConfig& model, const DataConfig& data) {
  return model.learn_variance ? 2 * data.channels : data.channels;
}

struct UNetImpl : torch::nn::Module {
  // Throws ddpm::Error (config) when the model does not fit the image shape.
  UNetImpl(const ModelConfig& model, const DataConfig& data);

  // x: [B, channels, height, width]; t: [B] timestep indices (0-based, see schedule.h).
  // Returns the prediction (diffusion.prediction), shaped like x; with model.learn_variance
  // also the variance output v: [B, 2 x channels, ...], v in the second half. A
  // class-conditional model (model.num_classes > 0) also takes labels: [B] int64 class
  // indices, where num_classes means "no class"; without labels every image is "no class". An
  // unconditional model refuses labels.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t,
                        const torch::Tensor& labels = {});

  bool class_conditional() const { return model_config.num_classes > 0; }
  int64_t no_class() const { return model_config.num_classes; }  // the "no class" label

  int64_t parameter_count() const;

  // Runs the network channels-last (NHWC) or not: converts the convolution weights now and the
  // activations inside forward(); the output is always contiguous NCHW. Faster on the CPU
  // (docs/BENCHMARKS.md, see prefers_channels_last() in device.h). Call it before an optimizer
  // is created, so that the optimizer's state takes the weights' layout.
  void set_channels_last(bool enabled);
  bool channels_last() const { return channels_last_; }

  ModelConfig model_config;
  DataConfig data_config;
  TimestepEmbedding time_embedding{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks, up_blocks;
  MidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
  // Class-conditional models only: [num_classes + 1, 4 * base_channels], its row added to the
  // time embedding's output (diffusers' UNet2DModel class_embedding, num_class_embeds rows).
  torch::nn::Embedding class_embedding{nullptr};

 private:
  bool channels_last_ = false;
};
TORCH_MODULE(UNet);

}  // namespace ddpm
