// The one sampling core: every path that samples images from a model runs through here —
// `ddpm sample`, ddpm::Pipeline (ddpm.h), the training run's sample grids and its evaluation.
// Image k of a seed is the same image whichever of them makes it, in whatever batches.
//
// A request is typed settings (which solver, guidance, precision, seed, batch size, the image
// shape) plus per-image inputs (the class of each image, an x_T to start from). A new way to
// start the chain (an init image, a mask, a noise level) is a new field of SampleInputs, used
// in sample_batch(); every caller gets it at once.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "base/precision.h"
#include "config/config.h"
#include "diffusion/image_chains.h"
#include "diffusion/inversion.h"
#include "diffusion/repaint.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "model/network.h"
#include "model/unet.h"

namespace ddpm {

// How to sample, typed: the config's sample section (and the prediction type and image shape)
// parsed once.
struct SampleSettings {
  SamplerOptions solver;
  double guidance = 1.0;  // classifier-free guidance W (guidance.h)
  Precision precision = Precision::fp32;
  uint64_t seed = 0;
  int64_t batch_size = 1;            // images per network call
  std::vector<int64_t> image_shape;  // [C, H, W]
  RepaintOptions repaint;            // inpainting's jumps (sample.jump_length, jump_n_sample)
};
// Throws ddpm::Error (config, naming the key) for an unknown sampler, spacing or precision.
SampleSettings sample_settings(const Config& config);

// What the chain starts from, per image of the request (row or entry k for image k; tensors
// float32 on the CPU). See ChainStart (image_chains.h) for what each start does.
struct SampleInputs {
  std::vector<int64_t> labels;  // the class of every image (plan_sample_classes); empty: none
  torch::Tensor x_T;            // [N, C, H, W]; undefined: drawn from the seed
  torch::Tensor init;           // [N, C, H, W] in [-1, 1]: image-to-image or inpainting input
  torch::Tensor mask;           // [N, 1, H, W], 1 keeps init's pixel: inpainting
  double strength = 1.0;        // image-to-image (init without mask): the fraction of the chain
};

// The network evaluations per image of a request: the sampler's, the part a strength runs, or
// RePaint's downward steps.
int sample_evaluations(const SampleSettings& settings, const SampleInputs& inputs,
                       int64_t timesteps);

// Every function below takes the network as a Network (network.h: the eager UNet or a compiled
// package), or as our UNet, which runs in eval mode for the call and goes back to its mode
// after. A batch over the network's max_batch() (guidance doubling it) is refused, ddpm::Error
// (usage), before any work.

// Images first .. first + count - 1 of a request, as float32 [count, C, H, W] in [-1, 1] on the
// CPU. `schedule` is on the device the chain runs on. `callback` sees every reverse step.
torch::Tensor sample_batch(Network& model, const NoiseSchedule& schedule,
                           const SampleSettings& settings, const SampleInputs& inputs,
                           int64_t first, int64_t count, const SamplerCallback& callback = {});
torch::Tensor sample_batch(UNet& model, const NoiseSchedule& schedule,
                           const SampleSettings& settings, const SampleInputs& inputs,
                           int64_t first, int64_t count, const SamplerCallback& callback = {});

// Called after every reverse step of the batch of images first .. first + count - 1.
using BatchStepCallback = std::function<void(int64_t first, int64_t count, int step, int total,
                                             const torch::Tensor& x, const torch::Tensor& x0)>;

// All `num_images` images of a request, settings.batch_size at a time: `take(first, images)`
// gets each batch as sample_batch returns it, in order.
void sample_all(Network& model, const NoiseSchedule& schedule, const SampleSettings& settings,
                const SampleInputs& inputs, int64_t num_images,
                const std::function<void(int64_t first, const torch::Tensor& images)>& take,
                const BatchStepCallback& on_step = {});
void sample_all(UNet& model, const NoiseSchedule& schedule, const SampleSettings& settings,
                const SampleInputs& inputs, int64_t num_images,
                const std::function<void(int64_t first, const torch::Tensor& images)>& take,
                const BatchStepCallback& on_step = {});

// DDIM inversion (inversion.h) of inputs.init, settings.batch_size at a time, with each image's
// class and the settings' guidance and precision: x_T of every image as float32 [N, C, H, W] on
// the CPU. settings.solver must be ddim with eta 0.
torch::Tensor invert_all(Network& model, const NoiseSchedule& schedule,
                         const SampleSettings& settings, const SampleInputs& inputs,
                         const BatchStepCallback& on_step = {});
torch::Tensor invert_all(UNet& model, const NoiseSchedule& schedule,
                         const SampleSettings& settings, const SampleInputs& inputs,
                         const BatchStepCallback& on_step = {});

}  // namespace ddpm
