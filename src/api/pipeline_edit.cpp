// ddpm::Pipeline::read_inputs (ddpm.h): input images and masks for editing, read from files as
// training data is.
#include <algorithm>
#include <string>

#include "api/pipeline_state.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"
#include "formats/image_tensor.h"

namespace ddpm {
namespace {

std::string size_text(const Image& image) {
  return std::to_string(image.width) + "x" + std::to_string(image.height);
}

// The notes past this many resized images are summed up in one line.
constexpr size_t kResizeNotes = 5;

}  // namespace

EditInputs Pipeline::read_inputs(const std::vector<std::string>& image_files,
                                 const std::vector<std::string>& mask_files) const {
  if (image_files.empty()) {
    throw Error(ErrorKind::usage, "Pipeline::read_inputs needs at least one image file");
  }
  if (mask_files.size() > 1 && mask_files.size() != image_files.size()) {
    throw Error(ErrorKind::usage, "Pipeline::read_inputs: " + std::to_string(mask_files.size()) +
                                      " masks for " + std::to_string(image_files.size()) +
                                      " images; give one mask for every image, or one per image");
  }
  const DataConfig& data = state_->config.data;
  EditInputs inputs;
  size_t resized = 0;
  for (size_t i = 0; i < image_files.size(); ++i) {
    const Image original = read_image(image_files[i], data.channels, data.max_image_pixels);
    const bool fits = original.height == data.height && original.width == data.width;
    if (!fits && ++resized <= kResizeNotes) {
      inputs.notes.push_back(image_files[i] + ": " + size_text(original) +
                             ", resized and centre-cropped to the model's " +
                             std::to_string(data.width) + "x" + std::to_string(data.height) +
                             " as training data is");
    }
    const torch::Tensor image =
        image_to_tensor(fits ? original : resize_and_crop(original, data.height, data.width));
    inputs.images.insert(inputs.images.end(), image.data_ptr<float>(),
                         image.data_ptr<float>() + image.numel());
    if (mask_files.empty()) continue;
    const std::string& mask_file = mask_files.size() == 1 ? mask_files[0] : mask_files[i];
    const Image mask = read_image(mask_file, 1, data.max_image_pixels);
    if (mask.height != original.height || mask.width != original.width) {
      throw Error(ErrorKind::usage, "mask '" + mask_file + "' is " + size_text(mask) +
                                        " but its image '" + image_files[i] + "' is " +
                                        size_text(original) +
                                        "; a mask must have its image's size");
    }
    const Image fitted = fits ? mask : resize_and_crop(mask, data.height, data.width);
    size_t kept = 0;
    for (const uint8_t pixel : fitted.pixels) {
      inputs.masks.push_back(pixel >= 128 ? 1.0f : 0.0f);
      kept += pixel >= 128;
    }
    if (kept == fitted.pixels.size()) {
      inputs.notes.push_back("mask '" + mask_file + "' keeps every pixel of '" + image_files[i] +
                             "': the image comes back as it is");
    } else if (kept == 0) {
      inputs.notes.push_back("mask '" + mask_file + "' keeps no pixel of '" + image_files[i] +
                             "': plain sampling");
    }
  }
  if (resized > kResizeNotes) {
    inputs.notes.push_back("... and " + std::to_string(resized - kResizeNotes) +
                           " more images resized and centre-cropped the same way");
  }
  return inputs;
}

}  // namespace ddpm
