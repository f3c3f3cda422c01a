// Every key of every config section, listed once: visit_fields(section, visit) calls
// visit(key, field) for each key of the section, in the order a written config lists them.
// Reading (strict, config_json.cpp), writing, the defaults in --help and the known keys all run
// on these lists, so a new key is one line here beside its field in config.h.
//
// `section` is a section struct, const or not; `visit` takes (const char* key, Field&) for every
// field type of config.h and (const char* key, ImageSizeField<Int>) for data.image_size.
#pragma once

#include <type_traits>

#include "config/config.h"

namespace ddpm {

// data.image_size: one number for a square image, or [height, width]. Int is int or const int.
template <typename Int>
struct ImageSizeField {
  Int& height;
  Int& width;
};

template <typename Section, typename Plain>
concept SectionOf = std::is_same_v<std::remove_const_t<Section>, Plain>;

template <SectionOf<DataConfig> Data, typename Visit>
void visit_fields(Data& data, Visit&& visit) {
  using Int = std::remove_reference_t<decltype((data.height))>;
  visit("path", data.path);
  visit("image_size", ImageSizeField<Int>{data.height, data.width});
  visit("channels", data.channels);
  visit("random_flip", data.random_flip);
  visit("workers", data.workers);
  visit("cache_mb", data.cache_mb);
  visit("max_files", data.max_files);
  visit("max_image_pixels", data.max_image_pixels);
  visit("labels", data.labels);
  visit("classes", data.classes);
}

template <SectionOf<ModelConfig> Model, typename Visit>
void visit_fields(Model& model, Visit&& visit) {
  visit("base_channels", model.base_channels);
  visit("channel_mult", model.channel_mult);
  visit("num_res_blocks", model.num_res_blocks);
  visit("attention_resolutions", model.attention_resolutions);
  visit("attention_heads", model.attention_heads);
  visit("attention_head_channels", model.attention_head_channels);
  visit("dropout", model.dropout);
  visit("norm_groups", model.norm_groups);
  visit("norm_eps", model.norm_eps);
  visit("time_embedding_order", model.time_embedding_order);
  visit("time_embedding_shift", model.time_embedding_shift);
  visit("downsample_padding", model.downsample_padding);
  visit("num_classes", model.num_classes);
  visit("learn_variance", model.learn_variance);
}

template <SectionOf<DiffusionConfig> Diffusion, typename Visit>
void visit_fields(Diffusion& diffusion, Visit&& visit) {
  visit("timesteps", diffusion.timesteps);
  visit("schedule", diffusion.schedule);
  visit("beta_start", diffusion.beta_start);
  visit("beta_end", diffusion.beta_end);
  visit("cosine_s", diffusion.cosine_s);
  visit("max_beta", diffusion.max_beta);
  visit("betas", diffusion.betas);
  visit("prediction", diffusion.prediction);
}

template <SectionOf<TrainConfig> Train, typename Visit>
void visit_fields(Train& train, Visit&& visit) {
  visit("batch_size", train.batch_size);
  visit("steps", train.steps);
  visit("lr", train.lr);
  visit("adam_beta1", train.adam_beta1);
  visit("adam_beta2", train.adam_beta2);
  visit("adam_eps", train.adam_eps);
  visit("weight_decay", train.weight_decay);
  visit("warmup_steps", train.warmup_steps);
  visit("grad_clip", train.grad_clip);
  visit("ema_decay", train.ema_decay);
  visit("ema_warmup", train.ema_warmup);
  visit("ema_power", train.ema_power);
  visit("loss_weighting", train.loss_weighting);
  visit("min_snr_gamma", train.min_snr_gamma);
  visit("loss", train.loss);
  visit("vlb_weight", train.vlb_weight);
  visit("timestep_sampling", train.timestep_sampling);
  visit("grad_accumulation", train.grad_accumulation);
  visit("seed", train.seed);
  visit("log_every", train.log_every);
  visit("checkpoint_every", train.checkpoint_every);
  visit("sample_every", train.sample_every);
  visit("tensorboard", train.tensorboard);
  visit("keep_checkpoints", train.keep_checkpoints);
  visit("device", train.device);
  visit("precision", train.precision);
  visit("loss_scale_init", train.loss_scale_init);
  visit("loss_scale_growth", train.loss_scale_growth);
  visit("loss_scale_backoff", train.loss_scale_backoff);
  visit("loss_scale_interval", train.loss_scale_interval);
  visit("loss_scale_min", train.loss_scale_min);
  visit("on_nonfinite", train.on_nonfinite);
  visit("dist_timeout_s", train.dist_timeout_s);
  visit("eval_every", train.eval_every);
  visit("eval_samples", train.eval_samples);
  visit("eval_real", train.eval_real);
  visit("eval_feature_net", train.eval_feature_net);
  visit("eval_nll_images", train.eval_nll_images);
  visit("class_dropout", train.class_dropout);
}

template <SectionOf<SampleConfig> Sample, typename Visit>
void visit_fields(Sample& sample, Visit&& visit) {
  visit("sampler", sample.sampler);
  visit("steps", sample.steps);
  visit("eta", sample.eta);
  visit("variance", sample.variance);
  visit("spacing", sample.spacing);
  visit("clip_denoised", sample.clip_denoised);
  visit("num_images", sample.num_images);
  visit("batch_size", sample.batch_size);
  visit("seed", sample.seed);
  visit("guidance", sample.guidance);
  visit("precision", sample.precision);
  visit("jump_length", sample.jump_length);
  visit("jump_n_sample", sample.jump_n_sample);
}

template <SectionOf<DistillConfig> Distill, typename Visit>
void visit_fields(Distill& distill, Visit&& visit) {
  visit("start_steps", distill.start_steps);
  visit("end_steps", distill.end_steps);
  visit("steps_per_round", distill.steps_per_round);
  visit("weighting", distill.weighting);
  visit("guidance", distill.guidance);
}

// visit_sections(config, visit) calls visit(section name, section struct) for each section.
template <SectionOf<Config> AnyConfig, typename Visit>
void visit_sections(AnyConfig& config, Visit&& visit) {
  visit("data", config.data);
  visit("model", config.model);
  visit("diffusion", config.diffusion);
  visit("train", config.train);
  visit("sample", config.sample);
  visit("distill", config.distill);
}

}  // namespace ddpm
