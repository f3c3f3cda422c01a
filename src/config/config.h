// The typed configuration: one struct per JSON section, with the defaults written once, here;
// closed choices are the enums of choices.h. Parsing (strict: unknown keys, wrong types and
// impossible values are errors naming the key path) and writing back to JSON live in
// config_json.h, which lists each section's keys once (config_fields.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/precision_name.h"
#include "config/choices.h"
#include "config/sampler_kind.h"

namespace ddpm {

struct DataConfig {
  std::string path;          // image folder; relative paths in a config file are relative to it
  int height = 32;           // `data.image_size` is either one number or [height, width]
  int width = 32;
  int channels = 3;          // 1 (grayscale), 3 (RGB) or 4 (RGBA)
  // Random horizontal flip during training: only for mirror-symmetric data (natural photos);
  // off by default, since on data with a handedness it teaches images the data never has.
  bool random_flip = false;
  int workers = 2;           // image-decoding threads
  int cache_mb = 2048;       // keep the decoded data set in memory when it fits (0: never)
  // The most image files a folder may hold: its list costs about 0.5 KB of memory per file.
  int64_t max_files = 5'000'000;
  // Larger images are skipped as unreadable (decoding one takes up to 8 bytes per pixel); at
  // most 16384 x 16384. The default is image_io.h's kMaxImagePixels, 8192 x 8192.
  int64_t max_image_pixels = int64_t{1} << 26;
  // none: unlabelled images; folders: each immediate subfolder of `path` is one class, in the
  // order of the sorted folder names (class_folders.h). Training records the folder names in
  // `classes`; a non-empty `classes` must then match the folder (so a resumed run checks it).
  LabelSource labels = LabelSource::none;
  std::vector<std::string> classes;
  bool operator==(const DataConfig&) const = default;
};

struct ModelConfig {
  int base_channels = 128;
  std::vector<int> channel_mult = {1, 2, 2, 2};      // one entry per resolution level
  int num_res_blocks = 2;                            // per level in the encoder (+1 in the decoder)
  std::vector<int> attention_resolutions = {16};     // feature-map sizes (shorter side) with attention
  int attention_heads = 1;
  // > 0: every attention has heads of this many channels, so the head count follows the width
  // (diffusers' attention_head_dim); 0: model.attention_heads heads everywhere.
  int attention_head_channels = 0;
  double dropout = 0.1;
  int norm_groups = 32;                              // GroupNorm groups; every width must divide
  double norm_eps = 1e-6;                            // GroupNorm epsilon (diffusers' default: 1e-5)
  // The sinusoidal timestep embedding: frequencies exp(-ln(10000) i / (base_channels/2 - shift)),
  // concatenated as sin_cos (DDPM) or cos_sin (diffusers' flip_sin_to_cos).
  TimeEmbeddingOrder time_embedding_order = TimeEmbeddingOrder::sin_cos;
  double time_embedding_shift = 1.0;                 // diffusers' freq_shift (its default: 0)
  // asymmetric: one row and column of zeros at the bottom and right before the stride-2 conv, as
  // TensorFlow's SAME padding in the original DDPM; symmetric: one on every side (diffusers).
  DownsamplePadding downsample_padding = DownsamplePadding::asymmetric;
  // > 0: class-conditional (class_embedding in unet.h): a learned embedding of the class,
  // one of num_classes + 1 rows (the last is "no class"), is added to the time embedding.
  // 0: unconditional. Training with data.labels folders sets it from the data.
  int num_classes = 0;
  // Learned reverse variances (Nichol & Dhariwal 2021): the output convolution gives 2 x
  // channels; the second half v sets log Sigma = frac log beta_t + (1 - frac) log beta~_t with
  // frac = (v + 1) / 2 (diffusers' learned_range). A config that sets it samples with
  // sample.variance learned unless its sample section names another.
  bool learn_variance = false;
  bool operator==(const ModelConfig&) const = default;
};

struct DiffusionConfig {
  int timesteps = 1000;            // T
  Schedule schedule = Schedule::linear;  // linear | cosine | quadratic | sigmoid | custom
  double beta_start = 1e-4;        // linear, quadratic and sigmoid
  double beta_end = 0.02;
  double cosine_s = 0.008;         // cosine offset s (Nichol & Dhariwal)
  double max_beta = 0.999;         // cosine betas are clipped here
  std::vector<double> betas;       // custom: beta_t for t = 0 .. T-1 (diffusers' trained_betas)
  Prediction prediction = Prediction::eps;  // what the network predicts: eps | x0 | v
  bool operator==(const DiffusionConfig&) const = default;
};

struct TrainConfig {
  int batch_size = 128;            // global: split evenly over the processes of a run
  int64_t steps = 800000;
  double lr = 2e-4;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double weight_decay = 0.0;
  int64_t warmup_steps = 5000;     // linear learning-rate warm-up
  double grad_clip = 1.0;          // global gradient norm; 0 disables clipping
  double ema_decay = 0.9999;       // the EMA's decay (its ceiling with ema_warmup)
  // EMA warm-up as diffusers' EMAModel(use_ema_warmup, inv_gamma 1): the update after training
  // step k (1-based) uses decay min(ema_decay, 1 - k^-ema_power), so it starts from 0.
  bool ema_warmup = true;
  double ema_power = 0.75;
  LossWeighting loss_weighting = LossWeighting::none;  // none (L_simple) | min_snr (loss.h)
  double min_snr_gamma = 5.0;
  // simple (L_simple) | hybrid (L_simple + vlb_weight L_vlb, the mean frozen in L_vlb; needs
  // model.learn_variance) | vlb (L_vlb alone, in bits per dimension): loss.h.
  LossKind loss = LossKind::simple;
  double vlb_weight = 0.001;       // lambda of L_hybrid (Nichol & Dhariwal 2021)
  // uniform | loss_aware: t drawn in proportion to sqrt(E[L_t^2]) of the last 10 losses at each
  // t, each loss reweighted by 1 / (T p_t) (timestep_resampler.h).
  TimestepSampling timestep_sampling = TimestepSampling::uniform;
  int grad_accumulation = 1;       // micro-batches per optimiser step; batch_size stays global
  uint64_t seed = 0;
  int64_t log_every = 100;
  int64_t checkpoint_every = 10000;
  int64_t sample_every = 10000;
  // TensorBoard event files in RUN_DIR/tensorboard/ (rank 0): every metrics.jsonl number, the
  // sample grids, the config and the command (train/tensorboard_writer.h).
  bool tensorboard = true;
  int keep_checkpoints = 3;
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  // fp32 | bf16 | fp16 (autocast, precision.h): bf16 on A100/H100/RTX 30xx and newer GPUs,
  // fp16 on V100, T4 and older ones, fp32 on the CPU.
  Precision precision = Precision::fp32;
  // fp16's dynamic loss scaler (loss_scaler.h): initial scale, growth factor after
  // loss_scale_interval steps without overflow, backoff factor on overflow, and the floor
  // below which the run stops as diverged.
  double loss_scale_init = 65536.0;
  double loss_scale_growth = 2.0;
  double loss_scale_backoff = 0.5;
  int64_t loss_scale_interval = 2000;
  double loss_scale_min = 1.0;
  OnNonfinite on_nonfinite = OnNonfinite::stop;  // stop | skip: on a NaN/Inf loss or gradient
  int64_t dist_timeout_s = 600;    // multi-process runs: longest wait for another rank
  // Every eval_every steps (0: never): FID, KID, precision and recall of eval_samples EMA
  // samples (the sample section's sampler and seed) against eval_real, a folder or a stats
  // file of `ddpm eval --save-real-stats`, in the features of eval_feature_net ("": the
  // default of ddpm eval). Paths in a config file are relative to it, like data.path.
  int64_t eval_every = 0;
  int eval_samples = 1000;
  std::string eval_real;
  std::string eval_feature_net;
  // > 0: every eval_every steps also the variational bound in bits/dim (likelihood.h) of the
  // EMA model on the first eval_nll_images images of the training data (sorted, no flip).
  int eval_nll_images = 0;
  // Class-conditional models: the probability that an example's class is replaced by "no
  // class", so that one network learns both (classifier-free guidance, Ho & Salimans 2022).
  double class_dropout = 0.1;
  bool operator==(const TrainConfig&) const = default;
};

struct SampleConfig {
  // ddpm | ddim | euler | euler_ancestral | heun | dpmpp_2m | dpmpp_2m_sde (sampler_kind.h)
  SamplerKind sampler = SamplerKind::ddpm;
  int steps = 1000;                   // number of reverse steps (respaced when < T)
  double eta = 0.0;                   // DDIM stochasticity (0 for every other sampler)
  // fixed_large (beta_t) | fixed_small (beta~_t) | learned (model.learn_variance models)
  Variance variance = Variance::fixed_large;
  // uniform | quadratic | leading | trailing | linspace | karras (see timestep_grid.h)
  Spacing spacing = Spacing::uniform;
  bool clip_denoised = true;          // clip the predicted x0 to [-1, 1]
  int num_images = 64;
  int batch_size = 64;
  uint64_t seed = 0;
  // Classifier-free guidance of a class-conditional model (guidance.h):
  // eps = eps_u + guidance * (eps_c - eps_u). 1: the conditional model alone; 0: unconditional.
  double guidance = 1.0;
  // fp32 | bf16 | fp16: the network's forward passes under autocast (precision.h); the
  // sampler's own arithmetic stays float32.
  Precision precision = Precision::fp32;
  // Inpainting (RePaint, repaint.h): every jump_length steps the chain goes back up
  // jump_length steps, jump_n_sample - 1 times (1: never).
  int jump_length = 10;
  int jump_n_sample = 10;
  bool operator==(const SampleConfig&) const = default;
};

// Progressive distillation (`ddpm distill`, Salimans & Ho 2022; distillation.h): rounds of
// train.steps / rounds steps each, from a student of start_steps / 2 DDIM steps (trailing
// spacing) down to one of end_steps. start_steps 0: not a distillation (ddpm train's configs);
// a config with start_steps > 0 is a distillation run's, or a distilled student's, whose sample
// section names the ddim grid it was distilled for.
struct DistillConfig {
  int start_steps = 0;             // the first teacher's DDIM steps: a power of two <= T
  int end_steps = 4;               // the last student's: a power of two < start_steps
  int64_t steps_per_round = 5000;  // optimiser steps per halving
  DistillWeighting weighting = DistillWeighting::truncated_snr;
  // The teacher's classifier-free guidance (class-conditional teachers): its guided DDIM steps
  // are the targets, so the student samples at guidance 1 with one pass per step.
  double guidance = 1.0;
  bool operator==(const DistillConfig&) const = default;
};

struct Config {
  DataConfig data;
  ModelConfig model;
  DiffusionConfig diffusion;
  TrainConfig train;
  SampleConfig sample;
  DistillConfig distill;
  bool operator==(const Config&) const = default;
};

// Checks every cross-field constraint (sizes divisible by the number of levels, widths
// divisible by the GroupNorm groups, ...). Throws ddpm::Error (config) naming the key path.
void validate(const Config& config);
// The parts of validate() that the UNet needs: its own keys and the image shape it is built for.
void validate_data(const DataConfig& data);
void validate_model(const ModelConfig& model, const DataConfig& data);

// Number of resolution levels of the UNet, and the feature-map size at each level.
int num_levels(const ModelConfig& model);

// The number of heads of an attention block `width` channels wide.
int attention_heads_at(const ModelConfig& model, int width);

// The rounds of a distillation: log2(start_steps / end_steps) (0 when start_steps is 0).
int64_t distillation_rounds(const DistillConfig& distill);

// The model keys that only training reads (dropout): two models that differ in them have the
// same weights and outputs.
bool is_training_only_model_key(const std::string& key);

}  // namespace ddpm
