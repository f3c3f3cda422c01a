// Cross-field validation of a parsed Config. Each failure names the key path and the reason.
#include "config/config.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <sstream>

#include "ddpm/error.h"

namespace ddpm {
namespace {

template <typename T>
std::string str(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

void require(bool condition, const std::string& key, const std::string& reason) {
  if (!condition) throw config_error(key, reason);
}

}  // namespace

// image_io.h's kMaxImagePixelsLimit (dataset.cpp checks that they agree).
constexpr int64_t kMostImagePixels = int64_t{16384} * 16384;

void validate_data(const DataConfig& data) {
  require(data.height > 0 && data.width > 0, "data.image_size",
          "must be positive, got " + str(data.height) + "x" + str(data.width));
  require(data.channels == 1 || data.channels == 3 || data.channels == 4, "data.channels",
          "must be 1 (grayscale), 3 (RGB) or 4 (RGBA), got " + str(data.channels));
  require(data.workers >= 1 && data.workers <= 256, "data.workers",
          "must be in [1, 256], got " + str(data.workers));
  require(data.cache_mb >= 0, "data.cache_mb",
          "must be >= 0 (0 never caches), got " + str(data.cache_mb));
  require(data.max_files >= 1, "data.max_files", "must be >= 1, got " + str(data.max_files));
  require(data.max_image_pixels >= 1 && data.max_image_pixels <= kMostImagePixels,
          "data.max_image_pixels",
          "must be in [1, " + str(kMostImagePixels) + "] (16384 x 16384, the most the "
          "decoder takes), got " + str(data.max_image_pixels));
  for (size_t i = 0; i < data.classes.size(); ++i) {
    const std::string& name = data.classes[i];
    require(!name.empty() && name != "." && name != ".." &&
                name.find_first_of("/\\") == std::string::npos,
            "data.classes", "entry " + str(i) + " ('" + name +
                                "') is not a folder name; class names are the data folder's "
                                "subfolder names");
    require(std::count(data.classes.begin(), data.classes.end(), name) == 1, "data.classes",
            "names the class '" + name + "' twice; every class needs its own name");
  }
}

namespace {

// The levels against the image: sizes divisible down the levels, attention at levels that exist,
// widths divisible into the heads.
void validate_levels(const ModelConfig& model, const DataConfig& data) {
  const int levels = num_levels(model);
  const int factor = 1 << (levels - 1);
  require(data.height % factor == 0 && data.width % factor == 0, "data.image_size",
          str(data.height) + "x" + str(data.width) + " is not divisible by " + str(factor) +
              " = 2^(levels-1) for the " + str(levels) +
              " levels of model.channel_mult; choose a size divisible by " + str(factor) +
              " or fewer levels");

  std::vector<int> level_sizes;
  for (int level = 0; level < levels; ++level) {
    level_sizes.push_back(std::min(data.height, data.width) >> level);
  }
  const auto check_heads = [&](int width, const std::string& where) {
    if (model.attention_head_channels > 0) {
      require(width % model.attention_head_channels == 0, "model.attention_head_channels",
              "the " + where + " attention width " + str(width) + " is not divisible by " +
                  str(model.attention_head_channels) + " channels per head");
    } else {
      require(width % model.attention_heads == 0, "model.attention_heads",
              "the " + where + " attention width " + str(width) + " is not divisible by " +
                  str(model.attention_heads) + " heads");
    }
  };
  for (int resolution : model.attention_resolutions) {
    const auto found = std::find(level_sizes.begin(), level_sizes.end(), resolution);
    std::string sizes;
    for (int size : level_sizes) sizes += (sizes.empty() ? "" : ", ") + str(size);
    require(found != level_sizes.end(), "model.attention_resolutions",
            str(resolution) + " matches no level; the levels' feature maps (shorter side) are " +
                sizes);
    check_heads(model.base_channels * model.channel_mult[found - level_sizes.begin()],
                str(resolution) + "x" + str(resolution));
  }
  check_heads(model.base_channels * model.channel_mult.back(), "middle");
}

}  // namespace

void validate_model(const ModelConfig& model, const DataConfig& data) {
  require(model.base_channels >= 4 && model.base_channels % 2 == 0, "model.base_channels",
          "must be an even number >= 4 (the sinusoidal time embedding splits it into sin and "
          "cos halves), got " + str(model.base_channels));
  require(!model.channel_mult.empty() && model.channel_mult.size() <= 12, "model.channel_mult",
          "needs between 1 and 12 levels, got " + str(model.channel_mult.size()));
  for (int mult : model.channel_mult) {
    require(mult > 0, "model.channel_mult", "entries must be positive, got " + str(mult));
  }
  require(model.num_res_blocks >= 1, "model.num_res_blocks",
          "must be >= 1, got " + str(model.num_res_blocks));
  require(model.attention_heads >= 1, "model.attention_heads",
          "must be >= 1, got " + str(model.attention_heads));
  require(model.attention_head_channels >= 0, "model.attention_head_channels",
          "must be >= 0 (0: model.attention_heads heads everywhere), got " +
              str(model.attention_head_channels));
  require(model.attention_head_channels == 0 || model.attention_heads == 1,
          "model.attention_heads",
          "is " + str(model.attention_heads) + " while model.attention_head_channels is " +
              str(model.attention_head_channels) +
              "; set one of them (a head count, or channels per head)");
  require(model.norm_eps > 0.0 && model.norm_eps < 1.0, "model.norm_eps",
          "must be in (0, 1), got " + str(model.norm_eps));
  require(model.time_embedding_shift >= 0.0 &&
              model.time_embedding_shift < model.base_channels / 2,
          "model.time_embedding_shift",
          "must be in [0, base_channels / 2 = " + str(model.base_channels / 2) + "), got " +
              str(model.time_embedding_shift));
  require(model.dropout >= 0.0 && model.dropout < 1.0, "model.dropout",
          "must be in [0, 1), got " + str(model.dropout));
  require(model.num_classes >= 0 && model.num_classes <= 1'000'000, "model.num_classes",
          "must be in [0, 1000000] (0: unconditional), got " + str(model.num_classes));
  require(data.classes.empty() || model.num_classes == 0 ||
              static_cast<size_t>(model.num_classes) == data.classes.size(),
          "model.num_classes",
          "is " + str(model.num_classes) + " but data.classes names " +
              str(data.classes.size()) + " classes; make them agree (or leave num_classes 0 "
              "to take it from the data)");
  require(model.norm_groups >= 1, "model.norm_groups",
          "must be >= 1, got " + str(model.norm_groups));
  for (int mult : model.channel_mult) {
    const int width = model.base_channels * mult;
    require(width % model.norm_groups == 0, "model.norm_groups",
            "every level width must be divisible by the GroupNorm groups: width " + str(width) +
                " (base_channels " + str(model.base_channels) + " x " + str(mult) +
                ") is not divisible by " + str(model.norm_groups));
  }
  validate_levels(model, data);
}

int attention_heads_at(const ModelConfig& model, int width) {
  return model.attention_head_channels > 0 ? width / model.attention_head_channels
                                           : model.attention_heads;
}

bool is_training_only_model_key(const std::string& key) { return key == "dropout"; }

namespace {

void validate_diffusion(const DiffusionConfig& diffusion) {
  require(diffusion.timesteps >= 1, "diffusion.timesteps",
          "must be >= 1, got " + str(diffusion.timesteps));
  if (diffusion.schedule == Schedule::custom) {
    require(diffusion.betas.size() == static_cast<size_t>(diffusion.timesteps), "diffusion.betas",
            "the custom schedule needs one beta per timestep (diffusion.timesteps = " +
                str(diffusion.timesteps) + "), got " + str(diffusion.betas.size()));
    for (size_t t = 0; t < diffusion.betas.size(); ++t) {
      require(diffusion.betas[t] > 0.0 && diffusion.betas[t] < 1.0, "diffusion.betas",
              "beta[" + str(t) + "] = " + str(diffusion.betas[t]) + " is outside (0, 1)");
    }
  } else {
    require(diffusion.betas.empty(), "diffusion.betas",
            "is only read by diffusion.schedule \"custom\" (the schedule is \"" +
                choice_name(diffusion.schedule) + "\"); remove it or set the schedule to custom");
  }
  require(diffusion.beta_start > 0.0 && diffusion.beta_start < 1.0, "diffusion.beta_start",
          "must be in (0, 1), got " + str(diffusion.beta_start));
  require(diffusion.beta_end > 0.0 && diffusion.beta_end < 1.0, "diffusion.beta_end",
          "must be in (0, 1), got " + str(diffusion.beta_end));
  require(diffusion.beta_start <= diffusion.beta_end, "diffusion.beta_end",
          "must be >= diffusion.beta_start (" + str(diffusion.beta_start) + "), got " +
              str(diffusion.beta_end));
  require(diffusion.cosine_s > 0.0, "diffusion.cosine_s",
          "must be > 0, got " + str(diffusion.cosine_s));
  require(diffusion.max_beta > 0.0 && diffusion.max_beta < 1.0, "diffusion.max_beta",
          "must be in (0, 1), got " + str(diffusion.max_beta));
}

void validate_train(const TrainConfig& train) {
  require(train.batch_size >= 1, "train.batch_size", "must be >= 1, got " + str(train.batch_size));
  require(train.steps >= 1, "train.steps", "must be >= 1, got " + str(train.steps));
  require(train.lr > 0.0, "train.lr", "must be > 0, got " + str(train.lr));
  require(train.adam_beta1 >= 0.0 && train.adam_beta1 < 1.0, "train.adam_beta1",
          "must be in [0, 1), got " + str(train.adam_beta1));
  require(train.adam_beta2 >= 0.0 && train.adam_beta2 < 1.0, "train.adam_beta2",
          "must be in [0, 1), got " + str(train.adam_beta2));
  require(train.adam_eps > 0.0, "train.adam_eps", "must be > 0, got " + str(train.adam_eps));
  require(train.weight_decay >= 0.0, "train.weight_decay",
          "must be >= 0, got " + str(train.weight_decay));
  require(train.warmup_steps >= 0, "train.warmup_steps",
          "must be >= 0, got " + str(train.warmup_steps));
  require(train.grad_clip >= 0.0, "train.grad_clip",
          "must be >= 0 (0 disables clipping), got " + str(train.grad_clip));
  require(train.ema_decay >= 0.0 && train.ema_decay < 1.0, "train.ema_decay",
          "must be in [0, 1), got " + str(train.ema_decay));
  require(train.log_every >= 1, "train.log_every", "must be >= 1, got " + str(train.log_every));
  require(train.checkpoint_every >= 1, "train.checkpoint_every",
          "must be >= 1, got " + str(train.checkpoint_every));
  require(train.sample_every >= 0, "train.sample_every",
          "must be >= 0 (0 disables sample grids), got " + str(train.sample_every));
  require(train.keep_checkpoints >= 1, "train.keep_checkpoints",
          "must be >= 1, got " + str(train.keep_checkpoints));
  static const std::regex device_pattern("auto|cpu|cuda(:[0-9]+)?");
  require(std::regex_match(train.device, device_pattern), "train.device",
          "must be auto, cpu, cuda or cuda:N, got '" + train.device + "'");
  require(std::isfinite(train.loss_scale_init) && train.loss_scale_init > 0.0 &&
              train.loss_scale_init <= 3.0e38,
          "train.loss_scale_init", "must be a number in (0, 3e38] (fp16's initial loss scale; "
          "65536 is PyTorch's), got " + str(train.loss_scale_init));
  require(std::isfinite(train.loss_scale_growth) && train.loss_scale_growth >= 1.0,
          "train.loss_scale_growth",
          "must be >= 1 (1: the scale never grows), got " + str(train.loss_scale_growth));
  require(train.loss_scale_backoff > 0.0 && train.loss_scale_backoff < 1.0,
          "train.loss_scale_backoff", "must be in (0, 1), got " + str(train.loss_scale_backoff));
  require(train.loss_scale_interval >= 1, "train.loss_scale_interval",
          "must be >= 1 (steps without overflow before the scale grows), got " +
              str(train.loss_scale_interval));
  require(train.loss_scale_min > 0.0 && train.loss_scale_min <= train.loss_scale_init,
          "train.loss_scale_min",
          "must be in (0, train.loss_scale_init] (" + str(train.loss_scale_init) + "), got " +
              str(train.loss_scale_min));
  require(train.dist_timeout_s >= 1, "train.dist_timeout_s",
          "must be >= 1 (seconds), got " + str(train.dist_timeout_s));
  require(train.ema_power > 0.0, "train.ema_power", "must be > 0, got " + str(train.ema_power));
  require(train.min_snr_gamma > 0.0, "train.min_snr_gamma",
          "must be > 0, got " + str(train.min_snr_gamma));
  require(train.grad_accumulation >= 1, "train.grad_accumulation",
          "must be >= 1, got " + str(train.grad_accumulation));
  require(train.batch_size % train.grad_accumulation == 0, "train.grad_accumulation",
          "must divide train.batch_size (" + str(train.batch_size) + "), got " +
              str(train.grad_accumulation));
  require(train.class_dropout >= 0.0 && train.class_dropout < 1.0, "train.class_dropout",
          "must be in [0, 1) (the probability of training an example without its class), got " +
              str(train.class_dropout));
  require(train.eval_every >= 0, "train.eval_every",
          "must be >= 0 (0 disables evaluation), got " + str(train.eval_every));
  require(train.eval_samples >= 4, "train.eval_samples",
          "must be >= 4 (precision/recall needs k + 1 = 4), got " + str(train.eval_samples));
  require(std::isfinite(train.vlb_weight) && train.vlb_weight > 0.0, "train.vlb_weight",
          "must be a number > 0 (lambda of L_hybrid; 0.001 is Nichol & Dhariwal's), got " +
              str(train.vlb_weight));
  require(train.eval_nll_images >= 0, "train.eval_nll_images",
          "must be >= 0 (0: no bits/dim during training), got " + str(train.eval_nll_images));
  require(train.eval_every == 0 || !train.eval_real.empty(), "train.eval_real",
          "is needed by train.eval_every: give the real images' folder or a stats file of "
          "`ddpm eval --save-real-stats`, or set train.eval_every=0");
}

void validate_sample(const SampleConfig& sample, const DiffusionConfig& diffusion) {
  const SamplerKind kind = sample.sampler;
  require(sample.eta >= 0.0, "sample.eta", "must be >= 0, got " + str(sample.eta));
  require(sample.eta == 0.0 || kind == SamplerKind::ddim, "sample.eta",
          "is DDIM's noise level; " + choice_name(kind) +
              " has none: set it to 0 or use sampler ddim");
  check_spacing(kind, sample.steps, sample.spacing, diffusion.timesteps);
  require(sample.num_images >= 1, "sample.num_images",
          "must be >= 1, got " + str(sample.num_images));
  require(sample.batch_size >= 1, "sample.batch_size",
          "must be >= 1, got " + str(sample.batch_size));
  require(sample.jump_length >= 1, "sample.jump_length",
          "must be >= 1, got " + str(sample.jump_length));
  require(sample.jump_n_sample >= 1, "sample.jump_n_sample",
          "must be >= 1 (1: no resampling), got " + str(sample.jump_n_sample));
  require(std::isfinite(sample.guidance) && sample.guidance >= 0.0, "sample.guidance",
          "must be a number >= 0 (1: the conditional model alone, 0: unconditional, above 1: "
          "stronger class guidance), got " + str(sample.guidance));
}

}  // namespace

int num_levels(const ModelConfig& model) { return static_cast<int>(model.channel_mult.size()); }

namespace {

// The rules that join sections: learned variances and the objectives that need them.
void validate_objective(const Config& config) {
  const bool learned = config.model.learn_variance;
  require(config.sample.variance != Variance::learned || learned, "sample.variance",
          "learned needs a model that predicts its variances (model.learn_variance true); "
          "use fixed_large or fixed_small");
  require(config.train.loss != LossKind::hybrid || learned, "train.loss",
          "hybrid trains learned variances through L_vlb and needs model.learn_variance true; "
          "with fixed variances use simple, or vlb (the true bound)");
  require(!learned || config.train.loss != LossKind::simple, "train.loss",
          "simple trains no variances, and model.learn_variance is true: set train.loss hybrid "
          "(L_simple + vlb_weight L_vlb, improved DDPM's) or vlb");
  require(config.train.loss != LossKind::vlb ||
              config.train.loss_weighting == LossWeighting::none,
          "train.loss_weighting",
          "min_snr weights L_simple, and train.loss vlb has none: set train.loss_weighting none, "
          "or train.loss simple or hybrid");
}

bool power_of_two(int64_t value) { return value >= 1 && (value & (value - 1)) == 0; }

// A distillation's section, and what it asks of the others (DistillConfig in config.h).
void validate_distill(const Config& config) {
  const DistillConfig& distill = config.distill;
  if (distill.start_steps == 0) return;
  const int T = config.diffusion.timesteps;
  require(power_of_two(distill.start_steps) && distill.start_steps >= 2 &&
              distill.start_steps <= T,
          "distill.start_steps",
          "must be a power of two from 2 to diffusion.timesteps (" + str(T) + "), e.g. 128, got " +
              str(distill.start_steps));
  require(power_of_two(distill.end_steps) && distill.end_steps < distill.start_steps,
          "distill.end_steps",
          "must be a power of two below distill.start_steps (" + str(distill.start_steps) +
              "), e.g. 4 or 1, got " + str(distill.end_steps));
  require(distill.steps_per_round >= 1, "distill.steps_per_round",
          "must be >= 1, got " + str(distill.steps_per_round));
  require(std::isfinite(distill.guidance) && distill.guidance >= 0.0, "distill.guidance",
          "must be a number >= 0 (1: the teacher's conditional model alone), got " +
              str(distill.guidance));
  require(distill.guidance == 1.0 || config.model.num_classes > 0, "distill.guidance",
          "guides a class-conditional teacher; this model has no classes: leave it at 1");
  const int64_t rounds = distillation_rounds(distill);
  require(config.train.steps == rounds * distill.steps_per_round, "train.steps",
          "of a distillation is its " + str(rounds) + " rounds x distill.steps_per_round (" +
              str(rounds * distill.steps_per_round) + "; ddpm distill sets it), got " +
              str(config.train.steps));
  require(config.train.timestep_sampling == TimestepSampling::uniform, "train.timestep_sampling",
          "distillation draws its own timesteps (the student's grid): set it to uniform");
}

}  // namespace

int64_t distillation_rounds(const DistillConfig& distill) {
  int64_t rounds = 0;
  for (int64_t steps = distill.start_steps; steps > distill.end_steps && steps > 1; steps /= 2) {
    ++rounds;
  }
  return rounds;
}

void validate(const Config& config) {
  validate_data(config.data);
  validate_model(config.model, config.data);
  validate_diffusion(config.diffusion);
  validate_train(config.train);
  validate_sample(config.sample, config.diffusion);
  validate_objective(config);
  validate_distill(config);
}

}  // namespace ddpm
