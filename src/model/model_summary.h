// What a model costs: parameters, forward FLOPs and activation memory per image.
#pragma once

#include <cstdint>

#include "model/unet.h"

namespace ddpm {

struct ModelSummary {
  int64_t parameters = 0;
  double forward_flops_per_image = 0.0;     // convolutions, linear layers, attention products
  double activation_bytes_per_image = 0.0;  // fp32 outputs kept for the backward pass (estimate)
};

// Counts by running one forward pass of a single image on the CPU without gradients, with the
// model's own shapes (see op_count.h). The model is left in the train/eval mode it had.
ModelSummary summarize(UNet& model);

}  // namespace ddpm
