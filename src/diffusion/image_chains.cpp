// Per-image chains; see image_chains.h.
#include "diffusion/image_chains.h"

#include <string>
#include <utility>

#include "ddpm/error.h"

namespace ddpm {
namespace {

void require_rows(const torch::Tensor& tensor, const std::vector<int64_t>& shape,
                  const std::string& what) {
  if (tensor.sizes() != c10::IntArrayRef(shape)) {
    throw Error(ErrorKind::runtime, "sample_images: " + what + " must have shape " +
                                        c10::str(c10::IntArrayRef(shape)) + ", got " +
                                        c10::str(tensor.sizes()));
  }
}

}  // namespace

torch::Tensor sample_images(const EpsilonPredictor& model, const NoiseSchedule& schedule,
                            const SamplerOptions& options, int64_t first_index, int64_t count,
                            std::vector<int64_t> image_shape, uint64_t seed, torch::Device device,
                            const SamplerCallback& callback, const ChainStart& start) {
  if (image_shape.size() != 3 || image_shape[0] < 1 || image_shape[1] < 1 || image_shape[2] < 1) {
    throw Error(ErrorKind::runtime, "sample_images: image_shape must be [C, H, W], all >= 1");
  }
  if (first_index < 0 || count < 1) {
    throw Error(ErrorKind::runtime, "sample_images: needs first_index >= 0 and count >= 1, got " +
                                        std::to_string(first_index) + " and " +
                                        std::to_string(count));
  }
  std::vector<at::Generator> generators;
  generators.reserve(count);
  for (int64_t k = 0; k < count; ++k) {
    generators.push_back(at::detail::createCPUGenerator(image_seed(seed, first_index + k)));
  }
  const auto cpu_float = torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU);
  const auto draw = [&] {
    std::vector<torch::Tensor> images;
    images.reserve(count);
    for (at::Generator& generator : generators) {
      images.push_back(torch::randn(image_shape, generator, cpu_float));
    }
    const torch::Tensor batch = torch::stack(images);
    // From pinned memory the copy runs asynchronously instead of waiting for the GPU's queue.
    return device.is_cuda() ? batch.pin_memory().to(device, /*non_blocking=*/true)
                            : batch.to(device);
  };
  std::vector<int64_t> batch_shape = {count};
  batch_shape.insert(batch_shape.end(), image_shape.begin(), image_shape.end());
  torch::Tensor x_T = draw();  // drawn even when given: the steps' z come after it
  if (start.x_T.defined()) {
    require_rows(start.x_T, batch_shape, "the given x_T");
    x_T = start.x_T.to(device, torch::kFloat32);
  }
  const auto next_draw = [&](int) { return draw(); };
  if (start.mask.defined() && !start.init.defined()) {
    throw Error(ErrorKind::runtime, "sample_images: a mask needs the init images it keeps");
  }
  if (!start.init.defined()) {
    return run_sampler(model, schedule, options, std::move(x_T), next_draw, callback);
  }
  require_rows(start.init, batch_shape, "the init images");
  const torch::Tensor init = start.init.to(device, torch::kFloat32);
  if (start.mask.defined()) {
    require_rows(start.mask, {count, 1, image_shape[1], image_shape[2]}, "the mask");
    return run_repaint(model, schedule, options, start.repaint, std::move(x_T), init,
                       start.mask.to(device, torch::kFloat32), next_draw, callback);
  }
  return run_sampler_from(model, schedule, options,
                          first_step_for_strength(options.steps, start.strength), init, x_T,
                          next_draw, callback);
}

}  // namespace ddpm
