// A request's per-image inputs; see request_inputs.h.
#include "api/request_inputs.h"

namespace ddpm {

torch::Tensor image_rows(const std::vector<float>& values, const std::vector<int64_t>& shape,
                         int64_t num_images, const std::string& field) {
  const int64_t image = shape[0] * shape[1] * shape[2];
  const auto count = static_cast<int64_t>(values.size());
  const int64_t wanted = num_images * image;
  if (count % image != 0 || count < wanted) {
    throw Error(ErrorKind::usage, "SampleRequest::" + field + " holds " + std::to_string(count) +
                                      " values; this request needs " +
                                      std::to_string(num_images) + " images of " +
                                      std::to_string(image) + " values each (" +
                                      std::to_string(wanted) + ")");
  }
  return torch::from_blob(const_cast<float*>(values.data()),
                          {count / image, shape[0], shape[1], shape[2]}, torch::kFloat32)
      .slice(0, 0, num_images)
      .clone();
}

namespace {

// One mask for every image, or one per image; 1 keeps, 0 generates.
torch::Tensor mask_rows(const std::vector<float>& values, const std::vector<int64_t>& shape,
                        int64_t num_images) {
  const int64_t pixels = shape[1] * shape[2];
  const std::vector<int64_t> mask_shape = {1, shape[1], shape[2]};
  const torch::Tensor masks =
      static_cast<int64_t>(values.size()) == pixels
          ? image_rows(values, mask_shape, 1, "masks").expand({num_images, 1, shape[1], shape[2]})
          : image_rows(values, mask_shape, num_images, "masks");
  return (masks >= 0.5).to(torch::kFloat32).contiguous();
}

}  // namespace

SampleInputs request_inputs(const SampleRequest& request, const SampleSettings& settings,
                            int64_t num_images) {
  const std::vector<int64_t>& shape = settings.image_shape;
  SampleInputs inputs;
  if (!request.initial_noise.empty()) {
    inputs.x_T = image_rows(request.initial_noise, shape, num_images, "initial_noise");
  }
  const bool init = !request.init_images.empty(), masks = !request.masks.empty();
  if (masks && !init) {
    throw Error(ErrorKind::usage, "SampleRequest::masks needs init_images, the images whose "
                                  "pixels the masks keep");
  }
  if (request.strength && (!init || masks)) {
    throw Error(ErrorKind::usage,
                std::string("SampleRequest::strength is image-to-image's: it needs init_images ") +
                    (masks ? "and no masks (inpainting runs the whole RePaint chain)" : ""));
  }
  if (init && !masks && !request.strength) {
    throw Error(ErrorKind::usage, "SampleRequest::init_images needs masks (inpainting) or a "
                                  "strength (image-to-image, in (0, 1])");
  }
  if (!init) return inputs;
  inputs.init = image_rows(request.init_images, shape, num_images, "init_images");
  if (inputs.init.abs().max().item<float>() > 1.0f) {
    throw Error(ErrorKind::usage, "SampleRequest::init_images must be in [-1, 1] (pixel / 127.5 "
                                  "- 1); Pipeline::read_inputs makes them from files");
  }
  if (masks) {
    require_repaint_sampler(settings.solver.kind);
    inputs.mask = mask_rows(request.masks, shape, num_images);
  } else {
    inputs.strength = *request.strength;
    first_step_for_strength(settings.solver.steps, inputs.strength);  // throws for no step
  }
  return inputs;
}

std::string request_mode(const SampleInputs& inputs) {
  if (inputs.mask.defined()) return "inpaint";
  return inputs.init.defined() ? "image-to-image" : "sample";
}

}  // namespace ddpm
