// Weights as a pickled dict of tensors; see weights.h.
#include "ddpm/weights.h"

#include <fstream>
#include <iterator>
#include <set>

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/serialize.h>

#include "ddpm/atomic_file.h"
#include "ddpm/error.h"

namespace ddpm {
namespace {

std::string shape_text(const torch::Tensor& tensor) {
  std::ostringstream out;
  out << tensor.sizes();
  return out.str();
}

Error weights_error(const std::filesystem::path& path, const std::string& reason) {
  return Error(ErrorKind::runtime, "weights file '" + path.string() + "': " + reason);
}

}  // namespace

std::vector<char> pickle_for_python(const c10::IValue& value) {
  std::vector<char> pickled;
  torch::jit::Pickler pickler(
      [&](const char* bytes, size_t size) { pickled.insert(pickled.end(), bytes, bytes + size); },
      /*tensor_table=*/nullptr, /*type_renamer=*/nullptr, /*memoized_class_types=*/nullptr,
      /*get_tensor_id=*/nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(value);
  pickler.stop();

  std::vector<char> archive;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t size) {
    const char* bytes = static_cast<const char*>(data);
    archive.insert(archive.end(), bytes, bytes + size);
    return size;
  });
  torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(),
                                     writer);
  writer.writeEndOfFile();
  return archive;
}

void write_pickle_file(const std::filesystem::path& path, const c10::IValue& value) {
  const std::vector<char> bytes = pickle_for_python(value);
  write_file_atomically(path, std::string_view(bytes.data(), bytes.size()));
}

c10::Dict<std::string, torch::Tensor> state_dict(const torch::nn::Module& module) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& item : module.named_parameters()) {
    dict.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  for (const auto& item : module.named_buffers()) {
    dict.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  return dict;
}

void save_weights(const torch::nn::Module& module, const std::filesystem::path& path) {
  write_pickle_file(path, c10::IValue(state_dict(module)));
}

c10::IValue read_pickle_file(const std::filesystem::path& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::runtime, what + " cannot be opened; check the path");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  try {
    return torch::pickle_load(bytes);
  } catch (const std::exception& error) {
    throw Error(ErrorKind::runtime,
                what + " is not readable (truncated or corrupt?): " + error.what());
  }
}

void load_weights(torch::nn::Module& module, const std::filesystem::path& path) {
  const c10::IValue value = read_pickle_file(path, "weights file '" + path.string() + "'");
  if (!value.isGenericDict()) throw weights_error(path, "does not hold a dict of tensors");
  std::map<std::string, torch::Tensor> stored;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString() || !entry.value().isTensor()) {
      throw weights_error(path, "holds an entry that is not name -> tensor");
    }
    stored[entry.key().toStringRef()] = entry.value().toTensor();
  }

  load_state_dict(module, stored, "weights file '" + path.string() + "'");
}

void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& source) {
  const auto fail = [&](const std::string& reason) {
    return Error(ErrorKind::runtime, source + ": " + reason);
  };
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  const auto assign = [&](const std::string& name, torch::Tensor& target) {
    const auto found = tensors.find(name);
    if (found == tensors.end()) throw fail("has no tensor '" + name + "'");
    if (found->second.sizes() != target.sizes()) {
      throw fail("tensor '" + name + "' has shape " + shape_text(found->second) +
                 ", the model expects " + shape_text(target) + " (a different model config?)");
    }
    target.copy_(found->second);
    used.insert(name);
  };
  for (auto& item : module.named_parameters()) assign(item.key(), item.value());
  for (auto& item : module.named_buffers()) assign(item.key(), item.value());
  for (const auto& item : tensors) {
    if (!used.count(item.first)) {
      throw fail("has tensor '" + item.first +
                 "' that the model does not have (a different model config?)");
    }
  }
}

}  // namespace ddpm
