// ddpm::Pipeline::likelihood (ddpm.h): the variational bound in bits per dimension
// (diffusion/likelihood.h) of images given as values.
#include <algorithm>

#include "api/pipeline_state.h"
#include "ddpm/error.h"
#include "diffusion/guidance.h"
#include "diffusion/likelihood.h"

namespace ddpm {
namespace {

// The bound's options of the model, with the request's variance.
BoundOptions checked_bound(const Config& config, const std::string& variance) {
  BoundOptions bound = bound_options(config);
  if (!variance.empty()) bound.variance = choice_from_name<Variance>(variance, "--variance");
  if (bound.variance == Variance::learned && !config.model.learn_variance) {
    throw Error(ErrorKind::usage, "--variance learned needs a model that predicts its variances "
                                  "(model.learn_variance); use fixed_large or fixed_small");
  }
  return bound;
}

std::vector<double> values_of(const torch::Tensor& tensor) {
  const torch::Tensor flat = tensor.to(torch::kCPU, torch::kFloat64).contiguous();
  return {flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel()};
}

}  // namespace

int64_t Pipeline::timesteps() const { return state_->model.schedule.timesteps(); }

LikelihoodReport Pipeline::likelihood(const LikelihoodRequest& request) const {
  const Config& config = state_->config;
  const int64_t image_size = int64_t{config.data.channels} * config.data.height *
                             config.data.width;
  if (request.images.empty() || request.images.size() % image_size != 0) {
    throw Error(ErrorKind::usage, "LikelihoodRequest::images must hold whole images of " +
                                      std::to_string(image_size) + " values, got " +
                                      std::to_string(request.images.size()));
  }
  if (request.batch_size < 0 || request.first_image < 0) {
    throw Error(ErrorKind::usage, "LikelihoodRequest: batch_size and first_image must be >= 0");
  }
  if (request.timesteps != 0) estimate_strata(timesteps(), request.timesteps);  // checks it
  NllOptions options;
  options.bound = checked_bound(config, request.variance);
  options.timesteps = request.timesteps;
  options.seed = request.seed;
  const int64_t count = static_cast<int64_t>(request.images.size()) / image_size;
  const int64_t limit = state_->model.network->max_batch();  // a compiled package's
  int64_t batch = std::max(1, config.sample.batch_size);
  if (limit > 0) batch = std::min(batch, limit);
  if (request.batch_size > 0) batch = request.batch_size;
  const torch::Tensor all =
      torch::tensor(request.images)
          .view({count, config.data.channels, config.data.height, config.data.width});
  SamplingModel& loaded = state_->model;
  const EpsilonPredictor model =
      guided_predictor(*loaded.network, {}, 1.0, config.sample.precision);
  const int64_t per_image = request.timesteps > 0 ? request.timesteps : timesteps();
  LikelihoodReport report;
  report.variance = choice_name(options.bound.variance);
  torch::Tensor sums;
  for (int64_t first = 0; first < count; first += batch) {
    const int64_t size = std::min(batch, count - first);
    options.first_image = request.first_image + first;
    const NllBatch result = nll_bound(
        model, loaded.schedule, all.narrow(0, first, size).to(loaded.device), options,
        [&](int64_t done, int64_t) {
          if (request.on_progress) request.on_progress(first * per_image + done * size,
                                                       count * per_image);
        });
    for (const double value : values_of(result.bits_per_dim)) report.bits_per_dim.push_back(value);
    for (const double value : values_of(result.prior)) report.prior.push_back(value);
    for (const double value : values_of(result.terms.select(1, 0))) {
      report.decoder.push_back(value);
    }
    if (request.timesteps == 0) {
      sums = sums.defined() ? sums + result.terms.sum(0) : result.terms.sum(0);
    }
  }
  if (sums.defined()) report.timestep_sums = values_of(sums);
  return report;
}

}  // namespace ddpm
