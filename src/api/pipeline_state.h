// What a ddpm::Pipeline (ddpm.h) holds: the model's source and config, and the model loaded for
// sampling. pipeline.cpp samples with it, pipeline_edit.cpp reads inputs and inverts.
#pragma once

#include "config/config.h"
#include "ddpm/ddpm.h"
#include "interop/model_source.h"
#include "interop/sampling_model.h"

namespace ddpm {

struct Pipeline::State {
  ModelSource source;
  Config config;
  SamplingModel model;
};

}  // namespace ddpm
