// ddpm.h with LibTorch's tensor type, for Pipeline::generate_tensor and generate_batches: the
// generated images as float32 tensors [N, C, H, W] in [-1, 1], as the network makes them. A program that
// includes this compiles against LibTorch's headers (find_package(ddpm) provides them).
#pragma once

#include <ATen/core/Tensor.h>

#include "ddpm/ddpm.h"
