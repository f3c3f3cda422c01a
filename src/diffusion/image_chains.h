// The reverse chain per image: each image k of a request has its own CPU generator, seeded with
// image_seed(seed, k), from which its x_T and then every step's z are drawn in order, so image k
// is the same whatever batch it is generated in. Where its chain starts is a ChainStart: noise
// (sampling), a given x_T (--noise, inversion's output), an input image noised part-way
// (image-to-image, SDEdit) or an input image with a mask (inpainting, RePaint).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "diffusion/loss.h"
#include "diffusion/repaint.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

namespace ddpm {

// Where the chains of a batch start; each tensor has one row per image of the batch.
struct ChainStart {
  ChainStart() = default;
  ChainStart(torch::Tensor given_x_T) : x_T(std::move(given_x_T)) {}  // NOLINT: x_T alone
  // Replaces the drawn x_T ([count, C, H, W], float32). It is drawn all the same, so every
  // step's z stays the same: passing the x_T the generators would draw changes nothing.
  torch::Tensor x_T;
  // Image-to-image and inpainting: the input images, [count, C, H, W] float32 in [-1, 1]. With
  // no mask the chain runs its last floor(strength x steps) steps from the input noised to the
  // first of them (run_sampler_from), with the drawn (or given) x_T as the noise.
  torch::Tensor init;
  double strength = 1.0;
  // Inpainting: [count, 1, H, W] float32, 1 where the input's pixel is kept, 0 where it is
  // generated; RePaint (run_repaint) from x_T with `repaint`'s jumps.
  torch::Tensor mask;
  RepaintOptions repaint;
};

// Images first_index .. first_index + count - 1 ([count, C, H, W] float32 on `device`), each
// from its own generator as above, the draws moved to `device`. Bit-identical across batch
// splits as long as the model's output for one image does not depend on its batch (convolution
// kernels chosen by batch size may change last bits).
torch::Tensor sample_images(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const SamplerOptions& options, int64_t first_index, int64_t count,
                            std::vector<int64_t> image_shape, uint64_t seed, torch::Device device,
                            const SamplerCallback& callback = {}, const ChainStart& start = {});

}  // namespace ddpm
