// Model weights on disk as a pickled dict {parameter name: tensor}, the format Python's
// `torch.load` reads; with the UNet's diffusers names, `UNet2DModel.load_state_dict` takes it.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace ddpm {

// Serialises a value (dicts, lists, tensors, numbers, strings) as the zip archive of
// `torch.save`, with plain pickled containers: Python's torch.load reads it even with
// weights_only=True, which refuses the type tags that torch::pickle_save adds.
std::vector<char> pickle_for_python(const c10::IValue& value);

// pickle_for_python(value) written to `path` atomically (see atomic_file.h).
void write_pickle_file(const std::filesystem::path& path, const c10::IValue& value);

// Reads a file written by pickle_for_python (or torch.save) back into a value, every tensor on
// the CPU. Throws ddpm::Error (runtime) starting with `what` (e.g. "checkpoint 'x.pt'") when the
// file cannot be opened, is not a zip archive, is truncated or corrupt, or states sizes that its
// bytes do not hold (an entry longer than the file, a tensor beyond its data): such a claim is
// refused before anything of that size is allocated or read.
c10::IValue read_pickle_file(const std::filesystem::path& path, const std::string& what);

// Parameters and buffers by their dotted names, on the CPU.
c10::Dict<std::string, torch::Tensor> state_dict(const torch::nn::Module& module);

// Copies `tensors` into the module's parameters and buffers. Strict: every parameter and buffer
// must be present with its shape, and nothing else; errors name `source` and the tensor.
void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& source);

// Writes atomically; throws ddpm::Error naming the path on failure.
void save_weights(const torch::nn::Module& module, const std::filesystem::path& path);

// Strict: every parameter and buffer must be present with its shape, and nothing else.
// Throws ddpm::Error naming the file and the first mismatching names.
void load_weights(torch::nn::Module& module, const std::filesystem::path& path);

}  // namespace ddpm
