// The DDPM UNet; see unet.h.
#include "model/unet.h"

#include <algorithm>

#include "base/op_count.h"

namespace ddpm {
namespace {

torch::Tensor run_resnet(torch::nn::ModuleList& list, size_t index, const torch::Tensor& h,
                         const torch::Tensor& temb) {
  return list[index]->as<ResnetBlockImpl>()->forward(h, temb);
}

torch::Tensor run_attention(torch::nn::ModuleList& list, size_t index, const torch::Tensor& h) {
  return list[index]->as<AttentionBlockImpl>()->forward(h);
}

}  // namespace

DownBlockImpl::DownBlockImpl()
    : resnets(register_module("resnets", torch::nn::ModuleList())),
      attentions(register_module("attentions", torch::nn::ModuleList())),
      downsamplers(register_module("downsamplers", torch::nn::ModuleList())) {}

torch::Tensor DownBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb,
                                     std::vector<torch::Tensor>& skips) {
  for (size_t i = 0; i < resnets->size(); ++i) {
    h = run_resnet(resnets, i, h, temb);
    if (!attentions->is_empty()) h = run_attention(attentions, i, h);
    skips.push_back(h);
  }
  if (!downsamplers->is_empty()) {
    h = downsamplers[0]->as<DownsampleImpl>()->forward(h);
    skips.push_back(h);
  }
  return h;
}

MidBlockImpl::MidBlockImpl(int64_t channels, int64_t embedding_channels, const ModelConfig& model)
    : resnets(register_module("resnets", torch::nn::ModuleList())),
      attentions(register_module("attentions", torch::nn::ModuleList())) {
  for (int i = 0; i < 2; ++i) {
    resnets->push_back(ResnetBlock(channels, channels, embedding_channels, model.norm_groups,
                                   model.norm_eps, model.dropout));
  }
  attentions->push_back(AttentionBlock(channels,
                                       attention_heads_at(model, static_cast<int>(channels)),
                                       model.norm_groups, model.norm_eps));
}

torch::Tensor MidBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb) {
  h = run_resnet(resnets, 0, h, temb);
  h = run_attention(attentions, 0, h);
  return run_resnet(resnets, 1, h, temb);
}

UpBlockImpl::UpBlockImpl()
    : resnets(register_module("resnets", torch::nn::ModuleList())),
      attentions(register_module("attentions", torch::nn::ModuleList())),
      upsamplers(register_module("upsamplers", torch::nn::ModuleList())) {}

torch::Tensor UpBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb,
                                   std::vector<torch::Tensor>& skips) {
  for (size_t i = 0; i < resnets->size(); ++i) {
    h = torch::cat({h, skips.back()}, 1);
    skips.pop_back();
    count_op(0.0, h);
    h = run_resnet(resnets, i, h, temb);
    if (!attentions->is_empty()) h = run_attention(attentions, i, h);
  }
  if (!upsamplers->is_empty()) h = upsamplers[0]->as<UpsampleImpl>()->forward(h);
  return h;
}

UNetImpl::UNetImpl(const ModelConfig& model, const DataConfig& data)
    : model_config(model), data_config(data) {
  validate_data(data);
  validate_model(model, data);
  const int64_t base = model.base_channels;
  const int64_t embedding_channels = 4 * base;
  const int levels = num_levels(model);
  const auto has_attention = [&](int level) {
    const int size = std::min(data.height, data.width) >> level;
    const auto& resolutions = model.attention_resolutions;
    return std::find(resolutions.begin(), resolutions.end(), size) != resolutions.end();
  };
  const auto make_resnet = [&](int64_t in, int64_t out) {
    return ResnetBlock(in, out, embedding_channels, model.norm_groups, model.norm_eps,
                       model.dropout);
  };
  const auto make_attention = [&](int64_t channels) {
    return AttentionBlock(channels, attention_heads_at(model, static_cast<int>(channels)),
                          model.norm_groups, model.norm_eps);
  };
  const bool symmetric_padding = model.downsample_padding == DownsamplePadding::symmetric;

  time_embedding = register_module("time_embedding", TimestepEmbedding(base, embedding_channels));
  conv_in = register_module("conv_in",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(data.channels, base, 3)
                                                  .padding(1)));
  init_variance_scaling(conv_in, 1.0);

  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  std::vector<int64_t> skip_channels = {base};
  int64_t channels = base;
  for (int level = 0; level < levels; ++level) {
    DownBlock block;
    const int64_t out = base * model.channel_mult[level];
    for (int i = 0; i < model.num_res_blocks; ++i) {
      block->resnets->push_back(make_resnet(channels, out));
      channels = out;
      if (has_attention(level)) block->attentions->push_back(make_attention(channels));
      skip_channels.push_back(channels);
    }
    if (level + 1 < levels) {
      block->downsamplers->push_back(Downsample(channels, symmetric_padding));
      skip_channels.push_back(channels);
    }
    down_blocks->push_back(block);
  }

  mid_block = register_module("mid_block", MidBlock(channels, embedding_channels, model));

  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  for (int level = levels - 1; level >= 0; --level) {
    UpBlock block;
    const int64_t out = base * model.channel_mult[level];
    for (int i = 0; i <= model.num_res_blocks; ++i) {
      block->resnets->push_back(make_resnet(channels + skip_channels.back(), out));
      skip_channels.pop_back();
      channels = out;
      if (has_attention(level)) block->attentions->push_back(make_attention(channels));
    }
    if (level > 0) block->upsamplers->push_back(Upsample(channels));
    up_blocks->push_back(block);
  }

  conv_norm_out = register_module(
      "conv_norm_out",
      torch::nn::GroupNorm(
          torch::nn::GroupNormOptions(model.norm_groups, channels).eps(model.norm_eps)));
  conv_out = register_module(
      "conv_out", torch::nn::Conv2d(
                      torch::nn::Conv2dOptions(channels, output_channels(model, data), 3).padding(1)));
  init_variance_scaling(conv_out, 0.0);
  // Registered last, so that every other weight of a conditional model starts as the
  // unconditional model's would (the embedding keeps torch's N(0, 1) start, as diffusers').
  if (model.num_classes > 0) {
    class_embedding = register_module(
        "class_embedding", torch::nn::Embedding(model.num_classes + 1, embedding_channels));
  }
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                const torch::Tensor& labels) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == data_config.channels &&
                  x.size(2) == data_config.height && x.size(3) == data_config.width,
              "the UNet expects images of shape [B, ", data_config.channels, ", ",
              data_config.height, ", ", data_config.width, "], got ", x.sizes());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), "timesteps must have shape [", x.size(0),
              "], got ", t.sizes());
  auto temb = time_embedding->forward(
      timestep_embedding(t, model_config.base_channels, model_config.time_embedding_shift,
                         model_config.time_embedding_order == TimeEmbeddingOrder::cos_sin));
  if (class_conditional()) {
    const torch::Tensor classes =
        labels.defined() ? labels : torch::full({x.size(0)}, no_class(), t.options().dtype(
                                                                             torch::kLong));
    TORCH_CHECK(classes.dim() == 1 && classes.size(0) == x.size(0),
                "class labels must have shape [", x.size(0), "], got ", classes.sizes());
    temb = temb + class_embedding->forward(classes.to(x.device(), torch::kLong))
                      .to(temb.scalar_type());
  } else {
    TORCH_CHECK(!labels.defined(), "this model is unconditional (model.num_classes 0); it takes "
                                   "no class labels");
  }
  auto h = run_conv(conv_in, x);
  // conv_in's output is where the activations become channels-last (its input may have 1
  // channel, for which both layouts are the same memory).
  if (channels_last_) h = h.contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<torch::Tensor> skips = {h};
  for (size_t i = 0; i < down_blocks->size(); ++i) {
    h = down_blocks[i]->as<DownBlockImpl>()->forward(h, temb, skips);
  }
  h = mid_block->forward(h, temb);
  for (size_t i = 0; i < up_blocks->size(); ++i) {
    h = up_blocks[i]->as<UpBlockImpl>()->forward(h, temb, skips);
  }
  return run_conv(conv_out, run_norm(conv_norm_out, h, /*swish=*/true)).contiguous();
}

void UNetImpl::set_channels_last(bool enabled) {
  channels_last_ = enabled;
  const auto format = enabled ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  torch::NoGradGuard no_grad;
  for (auto& parameter : parameters()) {
    if (parameter.dim() == 4) parameter.set_data(parameter.contiguous(format));
  }
}

int64_t UNetImpl::parameter_count() const {
  int64_t count = 0;
  for (const auto& parameter : parameters()) count += parameter.numel();
  return count;
}

}  // namespace ddpm
