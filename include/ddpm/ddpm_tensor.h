// ddpm.h with LibTorch's tensor type, for Pipeline::generate_tensor: the generated images as
// one float32 tensor [N, C, H, W] in [-1, 1], as the network makes them. A program that
// includes this compiles against LibTorch's headers (find_package(ddpm) provides them).
#pragma once

#include <ATen/core/Tensor.h>

#include "ddpm/ddpm.h"
