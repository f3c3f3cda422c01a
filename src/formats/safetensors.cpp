// Reading and writing safetensors files as float32 tensors; see safetensors.h.
#include "formats/safetensors.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <optional>

#include "base/atomic_file.h"
#include "ddpm/error.h"
#include "formats/safetensors_header.h"

namespace ddpm {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies it as it is");

Error read_error(const std::filesystem::path& file, const std::string& reason) {
  return Error(ErrorKind::runtime, "safetensors file '" + file.string() + "': " + reason);
}

std::optional<torch::Dtype> torch_dtype(const std::string& dtype) {
  if (dtype == "F32") return torch::kFloat32;
  if (dtype == "F16") return torch::kFloat16;
  if (dtype == "BF16") return torch::kBFloat16;
  if (dtype == "F64") return torch::kFloat64;
  return std::nullopt;
}

}  // namespace

SafetensorsContents read_safetensors(const std::filesystem::path& file) {
  std::error_code error;
  const uint64_t file_size = std::filesystem::file_size(file, error);
  if (error) throw read_error(file, "cannot be read (" + error.message() + ")");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw read_error(file, "cannot be opened; check the path and its permissions");
  std::string first(8, '\0');
  in.read(first.data(), 8);
  first.resize(static_cast<size_t>(in.gcount()));
  const uint64_t header_length = safetensors_header_length(first, file_size, file.string());
  std::string header(header_length, '\0');  // bounded by the file's size and the format's cap
  if (!in.read(header.data(), static_cast<std::streamsize>(header_length))) {
    throw read_error(file, "could not read its header (the file changed while reading?)");
  }
  const SafetensorsHeader parsed =
      parse_safetensors_header(header, file_size - 8 - header_length, file.string());

  SafetensorsContents contents;
  contents.metadata = parsed.metadata;
  for (const SafetensorsTensorInfo& info : parsed.tensors) {
    const auto dtype = torch_dtype(info.dtype);
    if (!dtype) {
      throw read_error(file, "tensor '" + printable_name(info.name) + "' has dtype " + info.dtype +
                                 "; model weights are read from F32, F16, BF16 or F64");
    }
    // The header's checks tie every size to the file's own size: this allocation is no larger.
    torch::Tensor tensor;
    try {
      tensor = torch::empty(info.shape, torch::TensorOptions().dtype(*dtype));
    } catch (const c10::Error&) {
      throw read_error(file, "tensor '" + printable_name(info.name) + "' has a shape of " +
                                 std::to_string(info.shape.size()) +
                                 " dimensions that LibTorch cannot hold");
    }
    const uint64_t bytes = info.end - info.begin;
    in.seekg(static_cast<std::streamoff>(parsed.data_start + info.begin));
    if (bytes > 0 && !in.read(static_cast<char*>(tensor.data_ptr()),
                              static_cast<std::streamsize>(bytes))) {
      throw read_error(file, "could not read the data of tensor '" + printable_name(info.name) +
                                 "' (the file changed while reading?)");
    }
    contents.tensors[info.name] = tensor.to(torch::kFloat32);
  }
  return contents;
}

void write_safetensors(const std::filesystem::path& file,
                       const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorInfo> infos;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor values = tensor.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    SafetensorsTensorInfo info;
    info.name = name;
    info.dtype = "F32";
    info.shape = values.sizes().vec();
    info.begin = offset;
    offset += static_cast<uint64_t>(values.nbytes());
    info.end = offset;
    infos.push_back(std::move(info));
    data.push_back(std::move(values));
  }
  std::string bytes = make_safetensors_header(infos, metadata);
  const size_t data_start = bytes.size();
  bytes.resize(data_start + offset);
  for (size_t i = 0; i < data.size(); ++i) {
    if (data[i].nbytes() > 0) {
      std::memcpy(bytes.data() + data_start + infos[i].begin, data[i].data_ptr(), data[i].nbytes());
    }
  }
  write_file_atomically(file, bytes);
}

}  // namespace ddpm
