// Model cost by counting one forward pass; see model_summary.h.
#include "model/model_summary.h"

#include "base/op_count.h"

namespace ddpm {

ModelSummary summarize(UNet& model) {
  const DataConfig& data = model->data_config;
  const torch::Device device = model->parameters().front().device();
  const bool was_training = model->is_training();
  model->eval();
  OpCounter counter;
  {
    torch::NoGradGuard no_grad;
    const auto x = torch::zeros({1, data.channels, data.height, data.width},
                                torch::TensorOptions().device(device));
    const auto t = torch::zeros({1}, torch::TensorOptions().dtype(torch::kLong).device(device));
    model->forward(x, t);
  }
  model->train(was_training);
  ModelSummary summary;
  summary.parameters = model->parameter_count();
  summary.forward_flops_per_image = counter.count().flops;
  summary.activation_bytes_per_image = counter.count().activation_elements * sizeof(float);
  return summary;
}

}  // namespace ddpm
