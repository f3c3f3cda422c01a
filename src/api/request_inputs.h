// What a SampleRequest (ddpm.h) gives the sampling core per image: x_T, input images, masks and
// the strength, as SampleInputs, checked against the request's settings before any network call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.h"
#include "ddpm/ddpm.h"
#include "diffusion/generation.h"

namespace ddpm {

// initial_noise, init_images, masks and strength as tensors (labels are left to the caller).
// Throws ddpm::Error (usage) naming the SampleRequest field for a size that fits no whole number
// of images or too few of them, masks without init_images, init_images with neither masks nor a
// strength, a strength with masks or without init_images, a strength that runs no step; and
// (config, naming sample.sampler) inpainting with a sampler other than ddpm or ddim.
SampleInputs request_inputs(const SampleRequest& request, const SampleSettings& settings,
                            int64_t num_images);

// "sample", "image-to-image" or "inpaint".
std::string request_mode(const SampleInputs& inputs);

// `values` ([N, C, H, W] float32 in row-major order, N >= num_images) as a tensor; `field` names
// the SampleRequest field in errors.
torch::Tensor image_rows(const std::vector<float>& values, const std::vector<int64_t>& shape,
                         int64_t num_images, const std::string& field);

}  // namespace ddpm
