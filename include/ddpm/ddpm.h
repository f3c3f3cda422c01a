// The C++ API of libddpm, for products that embed diffusion: load a model, sample images into
// memory, train from a config. It needs only the standard library (ddpm_tensor.h adds LibTorch
// tensors). `ddpm sample` and `ddpm train` run on these same calls, so a program gets the
// CLI's results and error messages: image k of seed s is the same image in both.
//
//   ddpm::Pipeline pipeline = ddpm::Pipeline::load("model.pt");   // or a diffusers folder
//   ddpm::SampleRequest request;
//   request.num_images = 16;
//   request.seed = 7;
//   for (const ddpm::GeneratedImage& image : pipeline.generate(request)) { ... image.pixels ... }
//
// Every failure throws ddpm::Error (error.h): its what() is the CLI's message, its kind() says
// whether the input, the config or the run failed, or a cancel stopped it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ddpm/error.h"
#include "ddpm/visibility.h"

namespace at {
class Tensor;  // LibTorch's tensor: ddpm_tensor.h includes it, for Pipeline::generate_tensor
}  // namespace at

namespace ddpm {

// The version of the library, as `ddpm --version` prints it and the CMake package carries it.
DDPM_API std::string version();

// One generated image: 8-bit pixels, rows of `width` pixels of `channels` bytes (1 gray,
// 3 RGB), top row first (HWC).
struct GeneratedImage {
  int64_t index = 0;  // image k of the request's seed: the same k gives the same image
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels bytes
  int64_t class_index = -1;     // class-conditional models: the class it was sampled for
  std::string class_name;
};

// Where a generate() call is: called after every reverse step of every batch.
struct SampleProgress {
  int64_t images_done = 0;   // images finished before the current batch
  int64_t images_total = 0;
  int64_t batch_images = 0;  // images in the current batch
  int step = 0;              // reverse steps done in the current batch (1 .. steps_total)
  int steps_total = 0;
};

// Each image's predicted x0 during a generate() call (SampleRequest::on_preview).
struct SamplePreview {
  int64_t first = 0;  // the batch's first image
  int64_t count = 0;  // images in the batch
  int step = 0;       // reverse steps done (1 .. steps_total)
  int steps_total = 0;
  std::vector<float> x0;  // count x C x H x W values in [-1, 1] (clipped when clip_denoised)
};

// What to sample. Unset fields take the model's own sample settings (its config's sample
// section: sampler, steps, spacing, seed, batch size, guidance, precision).
struct SampleRequest {
  int64_t num_images = 1;             // 0: the model's own sample.num_images
  std::optional<int64_t> batch_size;  // images per network call; any value gives the same images
  std::string sampler;                // "ddpm", "ddim", "euler", "dpmpp_2m", ... ("": the model's)
  std::optional<int> steps;           // reverse steps
  std::optional<uint64_t> seed;       // image k depends only on the seed and k
  std::optional<double> guidance;     // classifier-free guidance weight (1: conditional only)
  std::string precision;              // "fp32", "bf16", "fp16" ("": the model's, fp32 by default)
  // Class-conditional models: class names or indices, taken in turn ({}: every class in turn).
  std::vector<std::string> classes;
  // Any other key of the sample section, e.g. "sample.eta=0.5" or "sample.spacing=\"karras\"".
  std::vector<std::string> overrides;
  // x_T of every image instead of the seed's draw: image k's C x H x W values from offset
  // k * C * H * W (at least num_images images; {}: drawn from the seed). The steps' noise still
  // comes from the seed, so passing the x_T the seed would draw changes nothing.
  std::vector<float> initial_noise;
  // Editing. The input image of every image, laid out as initial_noise (C x H x W values in
  // [-1, 1] per image, at least num_images; Pipeline::read_inputs makes them from files). With
  // masks: inpainting (RePaint: sampler ddpm or ddim, sample.jump_length and jump_n_sample).
  // Without: image-to-image (SDEdit): every sampler's chain run for its last
  // floor(strength x steps) steps from the input noised to the first of them.
  std::vector<float> init_images;
  // Inpainting: H x W values per image (>= 0.5 keeps the input's pixel, below generates it),
  // one mask per image or one for every image.
  std::vector<float> masks;
  std::optional<double> strength;  // image-to-image: the fraction of the chain, in (0, 1]
  std::function<void(const SampleProgress&)> on_progress;
  // Called every preview_every reverse steps and at the last, when both are set.
  int preview_every = 0;
  std::function<void(const SamplePreview&)> on_preview;
  // Polled at every reverse step: when it turns true, generate() throws ddpm::Error with kind
  // ErrorKind::interrupted.
  const std::atomic<bool>* cancel = nullptr;
};

// What a request resolves to, checked, before any network call (Pipeline::plan): the model's
// sample settings with the request's applied, and the class of every image.
struct SamplePlan {
  int64_t num_images = 0;
  int64_t batch_size = 0;
  std::string sampler;          // e.g. "dpmpp_2m"
  int steps = 0;
  int network_evaluations = 0;  // per image
  std::string spacing;
  double eta = 0.0;             // ddim's noise level
  std::string variance;         // ddpm's
  bool clip_denoised = true;
  uint64_t seed = 0;
  double guidance = 1.0;
  std::string precision;
  std::vector<int64_t> image_classes;  // the class of image k; empty for an unconditional model
  std::vector<int64_t> classes;        // the distinct classes drawn, in the order asked
  std::string mode;                    // "sample", "image-to-image" or "inpaint"
  double strength = 1.0;               // image-to-image's
  int jump_length = 0, jump_n_sample = 0;  // inpainting's
  // The model timesteps the chain visits, in order (sampling from noise; empty otherwise).
  std::vector<double> timesteps;
  // What the caller should know: a distilled student sampled off the grid it was distilled for.
  std::vector<std::string> warnings;
};

// Input images and masks read from files for SampleRequest::init_images and masks.
struct EditInputs {
  std::vector<float> images;       // C x H x W values in [-1, 1] per image
  std::vector<float> masks;        // H x W values (1 keeps, 0 generates) per mask
  std::vector<std::string> notes;  // what was done to fit them (resizing), for the log
};

// The variational bound of images (Pipeline::likelihood): bits per dimension per image.
struct LikelihoodRequest {
  std::vector<float> images;  // C x H x W values in [-1, 1] per image, on the 256-level grid
  int64_t first_image = 0;    // the index of the first image (its draws: image_seed(seed, k))
  // 0: every term, T network evaluations per image. K (2 .. T): an unbiased estimate from K
  // evaluations per image: the decoder term, and one timestep drawn in each of K - 1 strata of
  // 1 .. T-1 (narrow at small t, where the terms are large), weighted by its stratum's width.
  int timesteps = 0;
  uint64_t seed = 0;
  int64_t batch_size = 0;  // images per network call (0: the model's sample.batch_size)
  // The reverse variances: "" the model's (learned for a learned-variance model, else its
  // sample.variance), or fixed_large, fixed_small, learned.
  std::string variance;
  // Evaluations done and their total, over all images of the request.
  std::function<void(int64_t done, int64_t total)> on_progress;
};

struct LikelihoodReport {
  std::vector<double> bits_per_dim;  // per image: the bound, or its estimate
  std::vector<double> prior;         // per image: the prior term L_T
  std::vector<double> decoder;       // per image: the decoder term L_0
  // With every term: the sum over the images of each term L_t, t = 0 .. T-1 (the decoder at 0).
  std::vector<double> timestep_sums;
  std::string variance;  // the variances used
};

// A model ready to sample: its weights on a device, with its config and noise schedule.
class DDPM_API Pipeline {
 public:
  // `path`: a ddpm checkpoint (.pt), a run directory (its latest checkpoint), a diffusers
  // model folder, or a package of `ddpm compile` (.pt2: AOTInductor's kernels, no Python; it
  // runs on the device type and in the precision it was compiled for, and ignores `ema`).
  // `device`: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". `ema`: the EMA weights
  // (what `ddpm sample` uses) or the raw ones.
  static Pipeline load(const std::string& path, const std::string& device = "auto",
                       bool ema = true);

  // Samples request.num_images images. Throws ddpm::Error for an impossible request (unknown
  // sampler or class, steps out of range, ...) before the first network call.
  std::vector<GeneratedImage> generate(const SampleRequest& request) const;
  // The same images as float32 [N, C, H, W] in [-1, 1] on the CPU, before 8-bit rounding.
  // Include ddpm/ddpm_tensor.h (which brings in LibTorch) to call it.
  at::Tensor generate_tensor(const SampleRequest& request) const;
  // The same images batch by batch, as they are made: `take(first, images)` gets images
  // first .. first + count - 1 as float32 [count, C, H, W] (ddpm_tensor.h).
  void generate_batches(const SampleRequest& request,
                        const std::function<void(int64_t first, const at::Tensor& images)>&
                            take) const;
  // What generate() would do for this request; throws what generate() would throw before its
  // first network call.
  SamplePlan plan(const SampleRequest& request) const;

  // Images for init_images, decoded as training data is (every format and bit depth the data
  // loader reads), converted to the model's channels and, when their size differs from the
  // model's, resized and centre-cropped as training data is (a note says so). Masks (white >= 128
  // keeps, black generates) must each have their image's size and are resized with it;
  // `mask_files` names none, one for every image, or one per image. Throws ddpm::Error naming
  // the file and both sizes.
  EditInputs read_inputs(const std::vector<std::string>& image_files,
                         const std::vector<std::string>& mask_files = {}) const;
  // DDIM inversion of request.init_images (num_images of them): the x_T, laid out as
  // initial_noise, that the deterministic DDIM chain of the request's steps and spacing maps
  // back to them. Sampler "ddim" (or unset), eta 0; classes and guidance apply. `on_progress`
  // sees the steps.
  std::vector<float> invert(const SampleRequest& request) const;
  // The variational bound (DDPM's L_vlb with the discretized decoder) of request.images in bits
  // per dimension. Throws ddpm::Error for an impossible request (a learned variance of a model
  // without one, a negative count) before the first network call.
  LikelihoodReport likelihood(const LikelihoodRequest& request) const;
  int64_t timesteps() const;  // T of the model's noise schedule

  int channels() const;
  int height() const;
  int width() const;
  int64_t step() const;                        // the checkpoint's training step (0: diffusers)
  std::vector<std::string> class_names() const;  // empty for an unconditional model
  std::string device() const;                  // e.g. "cpu", "cuda:0"
  std::string config_json() const;             // the model's whole config, as JSON
  std::string source_path() const;  // the checkpoint file or diffusers folder it was read from
  std::string weights() const;      // "ema", "raw" or "diffusers" (a folder's one set)
  std::string device_description() const;  // e.g. "cpu (2 threads)", the GPU's name

  Pipeline(Pipeline&&) noexcept;
  Pipeline& operator=(Pipeline&&) noexcept;
  ~Pipeline();

  struct State;

 private:
  explicit Pipeline(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Where a training run is: called after every step.
struct TrainStepReport {
  int64_t step = 0;        // steps done
  int64_t total = 0;       // train.steps
  int64_t first_step = 0;  // the step this run started from (0, or a resumed checkpoint's)
  int64_t log_every = 0;   // train.log_every
  int rank = 0;            // this process's rank in a multi-process run (0 alone)
  double loss = 0.0;       // the mean loss of the last train.log_every steps
  double lr = 0.0;
  double images_per_second = 0.0;
  double elapsed_seconds = 0.0;
};

// A training run, as `ddpm train` takes it.
struct TrainRequest {
  std::string config_file;  // JSON config; "" on resume: the run directory's config.json
  std::vector<std::string> overrides;  // "train.steps=100", "model.channel_mult=[1,2]", ...
  std::string data;                    // image folder (overrides data.path when not empty)
  std::string run_dir;                 // checkpoints, metrics.jsonl, samples/ go here
  bool resume = false;                 // continue run_dir from its latest checkpoint
  std::string init_from;  // fine-tune from a checkpoint, run directory or diffusers folder
  // Progressive distillation (`ddpm distill`): the teacher, a checkpoint, run directory or
  // diffusers folder; config_file then holds the keys laid over the teacher's config (its
  // distill and train sections), and the run distils in rounds (docs/DISTILLATION.md).
  bool distill = false;
  std::string teacher;
  std::function<void(const TrainStepReport&)> on_step;
  // Checked before every step: when true, the run writes a checkpoint and returns with
  // `stopped` set (resume it later with resume = true).
  const std::atomic<bool>* stop = nullptr;
  // This process is one rank of a multi-process run, started by torchrun or Slurm's srun: its
  // rank, the world size and the master come from their environment variables (a process
  // they did not start trains alone). false: a single process.
  bool launcher_environment = false;
  std::string command_line;  // recorded in run_dir/command.txt ("": "ddpm::train_model")
};

struct TrainReport {
  int64_t first_step = 0;  // 0, or the step a resumed run started from
  int64_t last_step = 0;
  bool stopped = false;    // returned early because `stop` turned true
  double last_loss = 0.0;
  int64_t skipped_steps = 0;    // non-finite or fp16-overflow steps, over the whole run
  std::string last_checkpoint;  // the newest checkpoint file
  int rank = 0;                 // this process's rank (0 alone)
};

// Trains to train.steps: one process, or one rank of a run that torchrun or Slurm started
// (TrainRequest::launcher_environment), as `ddpm train` does. Throws ddpm::Error for a bad
// config or data folder, an unusable run directory, a diverged run, ...
DDPM_API TrainReport train_model(const TrainRequest& request);

}  // namespace ddpm
