// diffusers' configs and ours: the published google/ddpm-* configs give the paper's networks
// (parameter counts from the paper), diffusers' defaults apply where a field is absent, what we
// cannot run is refused naming the field, and export then import is the identity.
#include <gtest/gtest.h>

#include <map>

#include "config/config_json.h"
#include "ddpm/error.h"
#include "diffusion/schedule.h"
#include "interop/diffusers_config.h"
#include "interop/diffusers_folder.h"
#include "model/unet.h"
#include "test_support.h"

namespace ddpm {
namespace {

using nlohmann::json;

json read_fixture(const std::string& name) {
  const auto file =
      std::filesystem::path(DDPM_SOURCE_DIR) / "tests" / "data" / "google-ddpm-cifar10-32" / name;
  return json::parse(testing::read_text(file));
}

// google/ddpm-cifar10-32's config.json and scheduler_config.json, as published.
const json kCifar10Unet = read_fixture("config.json");
const json kGoogleScheduler = read_fixture("scheduler_config.json");

json celebahq256_unet() {
  json unet = kCifar10Unet;
  unet["block_out_channels"] = {128, 128, 256, 256, 512, 512};
  unet["down_block_types"] = {"DownBlock2D",     "DownBlock2D",    "DownBlock2D",
                              "DownBlock2D",     "AttnDownBlock2D", "DownBlock2D"};
  unet["up_block_types"] = {"UpBlock2D", "AttnUpBlock2D", "UpBlock2D",
                            "UpBlock2D", "UpBlock2D",     "UpBlock2D"};
  unet["sample_size"] = 256;
  return unet;
}

Config imported(const json& unet, const json* scheduler, std::vector<std::string>* warnings = nullptr) {
  std::vector<std::string> ignored;
  return config_from_diffusers(unet, scheduler, "test", warnings ? *warnings : ignored);
}

int64_t parameters(const Config& config) {
  return UNet(config.model, config.data)->parameter_count();
}

TEST(DiffusersConfig, GoogleCifar10IsThePapersCifar10Network) {
  std::vector<std::string> warnings;
  const Config config = imported(kCifar10Unet, &kGoogleScheduler, &warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  ModelConfig paper;  // the defaults are the CIFAR-10 recipe
  paper.dropout = 0.0;  // absent from the config: diffusers' default
  EXPECT_EQ(config.model, paper);
  EXPECT_EQ(config.data.height, 32);
  EXPECT_EQ(config.data.channels, 3);
  EXPECT_EQ(parameters(config), 35746307);
  EXPECT_EQ(config.diffusion, DiffusionConfig{});
  EXPECT_EQ(config.sample.variance, Variance::fixed_large);
  EXPECT_TRUE(config.sample.clip_denoised);
  EXPECT_EQ(config.sample.spacing, Spacing::leading);  // absent: diffusers' default
}

TEST(DiffusersConfig, GoogleCelebAHq256IsThePapers256Network) {
  json scheduler = kGoogleScheduler;
  scheduler["variance_type"] = "fixed_small";
  const Config config = imported(celebahq256_unet(), &scheduler);
  EXPECT_EQ(config.model.channel_mult, (std::vector<int>{1, 1, 2, 2, 4, 4}));
  EXPECT_EQ(config.model.attention_resolutions, (std::vector<int>{16}));
  EXPECT_EQ(parameters(config), 113673219);
  EXPECT_EQ(config.sample.variance, Variance::fixed_small);
}

// train_unconditional.py sets only these fields: the rest are UNet2DModel's defaults, which are
// not DDPM's. Its parameter count is the 256 network's (counted by diffusers 0.42.1 too).
TEST(DiffusersConfig, AbsentFieldsTakeDiffusersDefaults) {
  const json unet = json::parse(R"({"_class_name": "UNet2DModel", "sample_size": 64,
    "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
    "block_out_channels": [128, 128, 256, 256, 512, 512],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D",
                         "AttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D",
                       "UpBlock2D"]})");
  std::vector<std::string> warnings;
  const Config config = imported(unet, nullptr, &warnings);
  EXPECT_EQ(config.model.norm_eps, 1e-5);
  EXPECT_EQ(config.model.time_embedding_order, TimeEmbeddingOrder::cos_sin);
  EXPECT_EQ(config.model.time_embedding_shift, 0.0);
  EXPECT_EQ(config.model.downsample_padding, DownsamplePadding::symmetric);
  EXPECT_EQ(config.model.attention_heads, 64);  // 8 channels per head at width 512
  EXPECT_EQ(config.model.attention_resolutions, (std::vector<int>{4}));
  EXPECT_EQ(parameters(config), 113673219);
  EXPECT_EQ(config.sample.variance, Variance::fixed_small);  // DDPMScheduler's default
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_CONTAINS(warnings[0], "no scheduler config");
}

TEST(DiffusersConfig, HeadsOfFixedWidthOverDifferentWidthsStayChannelsPerHead) {
  json unet = kCifar10Unet;
  unet["down_block_types"] = {"AttnDownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"};
  unet["up_block_types"] = {"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D"};
  unet["attention_head_dim"] = 32;
  const Config config = imported(unet, &kGoogleScheduler);
  EXPECT_EQ(config.model.attention_head_channels, 32);  // 4 heads at 128, 8 at 256
  EXPECT_EQ(attention_heads_at(config.model, 128), 4);
  EXPECT_EQ(attention_heads_at(config.model, 256), 8);
}

struct Refusal {
  std::string field;
  json value;
  std::string expected;
};

TEST(DiffusersConfig, WhatWeCannotRunIsRefusedNamingTheFieldAndValue) {
  const std::vector<Refusal> unet_refusals = {
      {"act_fn", "gelu", "\"silu\" (swish) only"},
      {"time_embedding_type", "fourier", "\"positional\" (sinusoidal) only"},
      {"resnet_time_scale_shift", "scale_shift", "\"default\" (additive time conditioning)"},
      {"class_embed_type", "timestep", "the learned one of num_class_embeds"},
      {"num_class_embeds", 1, "an integer >= 2"},
      {"center_input_sample", true, "false only"},
      {"mid_block_type", nullptr, "\"UNetMidBlock2D\" only"},
      {"mid_block_scale_factor", 1.414, "1 only"},
      {"add_attention", false, "true only"},
      {"downsample_type", "resnet", "\"conv\" only"},
      {"downsample_padding", 2, "0 (one row and column"},
      {"out_channels", 9, "as many as in_channels (3): the network predicts the noise of its "
                          "input; or twice as many"},
      {"in_channels", 2, "1 (grayscale), 3 (RGB) or 4 (RGBA)"},
      {"sample_size", nullptr, "ddpm builds the model for the image size"},
      {"block_out_channels", json::array({128, 192, 256, 256}), "multiples of the first"},
      {"down_block_types",
       json::array({"DownBlock2D", "SkipDownBlock2D", "DownBlock2D", "DownBlock2D"}),
       "block 1 is SkipDownBlock2D"},
      {"up_block_types", json::array({"UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"}),
       "attention at the same levels"},
      {"attention_head_dim", "wide", "null (one head) or a positive integer"},
      {"attn_norm_num_groups", 16, "null or norm_num_groups (32)"},
      {"time_embedding_dim", 100, "null or 4 x block_out_channels[0] (512)"},
      {"_class_name", "UNet2DConditionModel", "UNet2DModel, the unconditional DDPM network"},
  };
  for (const Refusal& refusal : unet_refusals) {
    json unet = kCifar10Unet;
    unet[refusal.field] = refusal.value;
    try {
      imported(unet, &kGoogleScheduler);
      ADD_FAILURE() << refusal.field << " " << refusal.value << " was accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::config);
      EXPECT_CONTAINS(error.what(), "field '" + refusal.field + "' is " + refusal.value.dump());
      EXPECT_CONTAINS(error.what(), refusal.expected);
      EXPECT_CONTAINS(error.what(), "test (UNet config)");
    }
  }
  const std::vector<Refusal> scheduler_refusals = {
      {"prediction_type", "flow_prediction", "epsilon, sample or v_prediction"},
      {"variance_type", "learned", "the log variance itself, diffusers' \"learned\", is not"},
      {"beta_schedule", "exponential", "linear, scaled_linear, squaredcos_cap_v2, sigmoid"},
      {"trained_betas", json::array({0.1, 0.2}), "one beta per timestep"},
      {"rescale_betas_zero_snr", true, "false only"},
  };
  for (const Refusal& refusal : scheduler_refusals) {
    json scheduler = kGoogleScheduler;
    scheduler[refusal.field] = refusal.value;
    try {
      imported(kCifar10Unet, &scheduler);
      ADD_FAILURE() << refusal.field << " " << refusal.value << " was accepted";
    } catch (const Error& error) {
      EXPECT_CONTAINS(error.what(), refusal.expected);
      EXPECT_CONTAINS(error.what(), "test (scheduler config)");
    }
  }
}

TEST(DiffusersConfig, SamplingFieldsWeDoNotApplyAndUnknownFieldsAreWarnings) {
  json unet = kCifar10Unet;
  unet["some_future_field"] = 3;
  json scheduler = kGoogleScheduler;
  scheduler["steps_offset"] = 1;
  scheduler["thresholding"] = true;
  std::vector<std::string> warnings;
  imported(unet, &scheduler, &warnings);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_CONTAINS(warnings[0], "field 'some_future_field' is not one ddpm knows");
  EXPECT_CONTAINS(warnings[1], "thresholding true is not applied");
  EXPECT_CONTAINS(warnings[2], "steps_offset 1 is not applied");
}

TEST(DiffusersConfig, SchedulesMapByNameOrAsTheBetasThemselves) {
  json scheduler = kGoogleScheduler;
  scheduler["beta_schedule"] = "scaled_linear";
  EXPECT_EQ(imported(kCifar10Unet, &scheduler).diffusion.schedule, Schedule::quadratic);
  scheduler["beta_schedule"] = "squaredcos_cap_v2";
  EXPECT_EQ(imported(kCifar10Unet, &scheduler).diffusion.schedule, Schedule::cosine);
  std::vector<double> betas(10);
  for (int t = 0; t < 10; ++t) betas[t] = 0.01 * (t + 1);
  scheduler["num_train_timesteps"] = 10;
  scheduler["trained_betas"] = betas;
  const Config custom = imported(kCifar10Unet, &scheduler);
  EXPECT_EQ(custom.diffusion.schedule, Schedule::custom);
  EXPECT_EQ(make_betas(custom.diffusion), betas);
}

// Ours -> diffusers -> ours gives the same model, image, schedule and sampling choices.
TEST(DiffusersConfig, ExportThenImportIsTheIdentity) {
  std::vector<Config> configs(6);
  configs[1].model.channel_mult = {1, 1, 2, 2, 4, 4};
  configs[1].data.height = configs[1].data.width = 256;
  configs[1].sample.variance = Variance::fixed_small;
  configs[2].model = testing::small_model_config();
  configs[2].data = testing::image_config(1, 16, 32);
  configs[2].model.attention_heads = 2;
  configs[2].diffusion.schedule = Schedule::cosine;
  configs[2].diffusion.cosine_s = 0.01;  // no diffusers name: written as trained_betas
  configs[2].sample.spacing = Spacing::uniform;
  configs[3].model.attention_resolutions = {32, 16};
  configs[3].model.attention_head_channels = 64;
  configs[3].model.norm_eps = 1e-5;
  configs[3].model.time_embedding_order = TimeEmbeddingOrder::cos_sin;
  configs[3].model.time_embedding_shift = 0;
  configs[3].model.downsample_padding = DownsamplePadding::symmetric;
  configs[3].diffusion.schedule = Schedule::quadratic;
  configs[3].sample.spacing = Spacing::trailing;
  configs[3].diffusion.prediction = Prediction::v;
  configs[4].diffusion.schedule = Schedule::sigmoid;
  configs[4].sample.clip_denoised = false;
  configs[4].diffusion.prediction = Prediction::x0;
  configs[5].model.learn_variance = true;  // out_channels 6, variance_type learned_range
  configs[5].train.loss = LossKind::hybrid;
  configs[5].sample.variance = Variance::learned;
  for (size_t i = 0; i < configs.size(); ++i) {
    const Config& config = configs[i];
    std::vector<std::string> warnings;
    const json scheduler = diffusers_scheduler_config(config, warnings);
    const Config back = imported(diffusers_unet_config(config), &scheduler);
    EXPECT_EQ(back.model, config.model) << i;
    EXPECT_EQ(back.data.height, config.data.height) << i;
    EXPECT_EQ(back.data.width, config.data.width) << i;
    EXPECT_EQ(back.data.channels, config.data.channels) << i;
    EXPECT_EQ(make_betas(back.diffusion), make_betas(config.diffusion)) << i;
    EXPECT_EQ(back.diffusion.prediction, config.diffusion.prediction) << i;
    const std::map<Prediction, std::string> names = {
        {Prediction::eps, "epsilon"}, {Prediction::x0, "sample"}, {Prediction::v, "v_prediction"}};
    EXPECT_EQ(scheduler["prediction_type"], names.at(config.diffusion.prediction)) << i;
    EXPECT_EQ(back.sample.variance, config.sample.variance) << i;
    EXPECT_EQ(diffusers_unet_config(config)["out_channels"],
              config.model.learn_variance ? 6 : config.data.channels) << i;
    if (config.model.learn_variance) EXPECT_EQ(scheduler["variance_type"], "learned_range");
    EXPECT_EQ(back.sample.clip_denoised, config.sample.clip_denoised) << i;
    // uniform is written as diffusers' linspace, which differs only where a timestep is a half.
    EXPECT_EQ(back.sample.spacing,
              config.sample.spacing == Spacing::uniform ? Spacing::linspace : config.sample.spacing)
        << i;
  }
}

TEST(DiffusersConfig, ExportRefusesAHeadCountDiffusersCannotSay) {
  Config config;
  config.model.attention_resolutions = {32, 16};  // widths 128 and 256
  config.model.attention_heads = 4;
  EXPECT_THROW(diffusers_unet_config(config), Error);
  config.model.attention_resolutions = {16};       // widths 256 and the middle's 256
  EXPECT_EQ(diffusers_unet_config(config)["attention_head_dim"], 64);
}

TEST(DiffusersWeights, LegacyAttentionNamesAreRenamed) {
  WeightMap legacy = {{"mid_block.attentions.0.query.weight", torch::ones({2, 2})},
                      {"mid_block.attentions.0.key.bias", torch::ones({2})},
                      {"mid_block.attentions.0.value.weight", torch::ones({2, 2})},
                      {"down_blocks.1.attentions.1.proj_attn.bias", torch::ones({2})},
                      {"mid_block.attentions.0.group_norm.weight", torch::ones({2})},
                      {"down_blocks.0.resnets.0.conv1.weight", torch::ones({1})}};
  const WeightMap renamed = rename_legacy_attention_keys(legacy, "test");
  std::vector<std::string> names;
  for (const auto& [name, tensor] : renamed) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"down_blocks.0.resnets.0.conv1.weight",
                                             "down_blocks.1.attentions.1.to_out.0.bias",
                                             "mid_block.attentions.0.group_norm.weight",
                                             "mid_block.attentions.0.to_k.bias",
                                             "mid_block.attentions.0.to_q.weight",
                                             "mid_block.attentions.0.to_v.weight"}));
  legacy["mid_block.attentions.0.to_q.weight"] = torch::ones({2, 2});
  EXPECT_THROW(rename_legacy_attention_keys(legacy, "test"), Error);
}

}  // namespace
}  // namespace ddpm
