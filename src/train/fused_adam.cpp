#include "train/fused_adam.h"

#include <map>
#include <memory>
#include <vector>

#include "ddpm/error.h"

namespace ddpm {
namespace {

// The kernel walks a parameter, its gradient and its two moments as flat arrays, so all four
// must share one memory layout (channels-last weights make the gradient and state follow).
torch::Tensor in_layout_of(const torch::Tensor& parameter, const torch::Tensor& tensor) {
  if (tensor.strides() == parameter.strides()) return tensor;
  return tensor.clone(parameter.suggest_memory_format());
}

}  // namespace

void fused_adam_step(torch::optim::Adam& optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    if (options.amsgrad()) {
      throw Error(ErrorKind::runtime, "fused_adam_step: amsgrad is not supported");
    }
    // Parameters by their step count after this step: the kernel takes one step tensor per
    // parameter, and all parameters that share a count share one tensor.
    struct Lists {
      std::vector<torch::Tensor> parameters, gradients, exp_avgs, exp_avg_sqs;
    };
    std::map<int64_t, Lists> by_step;
    for (auto& parameter : group.params()) {
      if (!parameter.grad().defined()) continue;
      auto& slot = optimizer.state()[parameter.unsafeGetTensorImpl()];
      if (!slot) {
        auto fresh = std::make_unique<torch::optim::AdamParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(parameter, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(parameter, torch::MemoryFormat::Preserve));
        slot = std::move(fresh);
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*slot);
      state.exp_avg(in_layout_of(parameter, state.exp_avg()));
      state.exp_avg_sq(in_layout_of(parameter, state.exp_avg_sq()));
      state.step(state.step() + 1);
      Lists& lists = by_step[state.step()];
      lists.parameters.push_back(parameter);
      lists.gradients.push_back(in_layout_of(parameter, parameter.grad()));
      lists.exp_avgs.push_back(state.exp_avg());
      lists.exp_avg_sqs.push_back(state.exp_avg_sq());
    }
    const auto [beta1, beta2] = options.betas();
    for (auto& [step, lists] : by_step) {
      const torch::Tensor& first = lists.parameters.front();
      const torch::Tensor step_tensor =
          torch::full({}, double(step), first.options().dtype(torch::kFloat32));
      const std::vector<torch::Tensor> steps(lists.parameters.size(), step_tensor);
      at::_fused_adam_(lists.parameters, lists.gradients, lists.exp_avgs, lists.exp_avg_sqs,
                       /*max_exp_avg_sqs=*/{}, steps, options.lr(), beta1, beta2,
                       options.weight_decay(), options.eps(), /*amsgrad=*/false,
                       /*maximize=*/false);
    }
  }
}

}  // namespace ddpm
