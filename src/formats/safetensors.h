// safetensors files as tensors: diffusers' weight format (format and checks in
// safetensors_header.h). Reads F32, F16, BF16 and F64 as float32; writes F32 with the metadata
// {"format": "pt"} that diffusers and transformers write.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include <torch/torch.h>

namespace ddpm {

struct SafetensorsContents {
  std::map<std::string, torch::Tensor> tensors;  // float32, on the CPU
  std::map<std::string, std::string> metadata;
};

// Throws ddpm::Error (runtime) naming the file, and the tensor where there is one, for a missing
// or unreadable file, any violation of the format, or a tensor of another dtype (integers,
// booleans, float8), which no model weight here is.
SafetensorsContents read_safetensors(const std::filesystem::path& file);

// Writes the tensors (converted to contiguous float32) by name, atomically (atomic_file.h).
void write_safetensors(const std::filesystem::path& file,
                       const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace ddpm
