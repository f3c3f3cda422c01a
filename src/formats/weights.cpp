// Weights as a pickled dict of tensors; see weights.h.
#include "formats/weights.h"

#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/versions.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include "base/atomic_file.h"
#include "ddpm/error.h"
#include "formats/pickle_scan.h"
#include "formats/safetensors_header.h"  // printable_name
#include "formats/zip_directory.h"

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


// A torch.save archive may come from anywhere, and LibTorch's reader trusts the sizes a file
// states: it allocates a zip entry by its stated length before reading it, never compares a
// tensor's storage length, offset, sizes and strides with the bytes of its entry, and leaks
// when a corrupt file makes it throw. So the archive is read here (zip_directory.h), and only
// the pickle goes to LibTorch's unpickler, with every tensor checked before anything reads it.

// The stored entries of an archive by name, and the folder (torch.save's archive name) they
// are all in, as PyTorchStreamReader finds them.
class TorchArchive {
 public:
  TorchArchive(const std::filesystem::path& path, const std::string& what)
      : in_(path, std::ios::binary), what_(what) {
    const std::vector<ZipEntry> entries = read_zip_directory(path, what);
    const size_t slash = entries.empty() ? std::string::npos : entries.front().name.find('/');
    if (slash == std::string::npos) {
      throw refuse("is not a torch.save archive: its first entry is not in a folder");
    }
    folder_ = entries.front().name.substr(0, slash + 1);
    for (const ZipEntry& entry : entries) {
      if (entry.method != 0 || entry.compressed_size != entry.size) {
        throw refuse("has a compressed entry '" + printable_name(entry.name) +
                     "' (torch.save stores entries uncompressed; for a re-zipped archive, unzip "
                     "it and zip it again with `zip -0`)");
      }
      if (!entries_.emplace(entry.name, entry).second) {
        throw refuse("names the entry '" + printable_name(entry.name) + "' twice");
      }
    }
  }

  bool contains(const std::string& name) const { return entries_.count(folder_ + name) > 0; }

  // The entry's bytes, allocated by its size, which the directory checks tied to the file.
  std::tuple<at::DataPtr, size_t> read(const std::string& name) {
    const auto found = entries_.find(folder_ + name);
    if (found == entries_.end()) throw refuse("has no entry '" + printable_name(name) + "'");
    const ZipEntry& entry = found->second;
    at::DataPtr data = at::getCPUAllocator()->allocate(entry.size);
    in_.seekg(static_cast<std::streamoff>(entry.data_offset));
    if (entry.size > 0 && !in_.read(static_cast<char*>(data.get()),
                                    static_cast<std::streamsize>(entry.size))) {
      throw refuse("could not be read (the file changed while reading?)");
    }
    return {std::move(data), entry.size};
  }

  Error refuse(const std::string& reason) const {
    return Error(ErrorKind::runtime, what_ + " " + reason);
  }
  const std::string& what() const { return what_; }

 private:
  std::ifstream in_;
  std::string what_;
  std::map<std::string, ZipEntry> entries_;
  std::string folder_;
};

// The archive's format version, which the unpickler reads some containers by.
uint64_t format_version(TorchArchive& archive) {
  const std::string name = archive.contains(".data/version") ? ".data/version" : "version";
  const auto [data, size] = archive.read(name);
  const std::string text(static_cast<const char*>(data.get()), std::min<size_t>(size, 32));
  uint64_t version = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), version);
  if (error != std::errc() || end == text.data() ||
      version < caffe2::serialize::kMinSupportedFileFormatVersion ||
      version > caffe2::serialize::kMaxSupportedFileFormatVersion) {
    throw archive.refuse("has the format version '" + printable_name(text) + "', not one of " +
                         std::to_string(caffe2::serialize::kMinSupportedFileFormatVersion) +
                         "-" +
                         std::to_string(caffe2::serialize::kMaxSupportedFileFormatVersion));
  }
  return version;
}

// One past the last byte `tensor` reaches in its storage, or nothing when that overflows or a
// size, stride or offset is negative.
std::optional<uint64_t> tensor_extent(const torch::Tensor& tensor) {
  if (tensor.storage_offset() < 0) return std::nullopt;
  uint64_t last = static_cast<uint64_t>(tensor.storage_offset());
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    const int64_t size = tensor.size(d), stride = tensor.stride(d);
    if (size < 0 || stride < 0) return std::nullopt;
    if (size == 0) return 0;  // no element: nothing is read
    uint64_t reach = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(size - 1), static_cast<uint64_t>(stride),
                               &reach) ||
        __builtin_add_overflow(last, reach, &last)) {
      return std::nullopt;
    }
  }
  uint64_t end = 0;
  if (__builtin_add_overflow(last, uint64_t{1}, &last) ||
      __builtin_mul_overflow(last, static_cast<uint64_t>(tensor.element_size()), &end)) {
    return std::nullopt;
  }
  return end;
}

// The bytes of each entry the unpickler read, by where they are in memory.
using EntrySizes = std::unordered_map<const void*, size_t>;

// Every tensor in `root` must be a dense CPU tensor that lies within the entry it was read from.
void check_tensors(const c10::IValue& root, const EntrySizes& entries,
                   const TorchArchive& archive) {
  const auto refuse = [&](const std::string& reason) {
    return archive.refuse(reason + ": the file is corrupt or crafted");
  };
  std::vector<c10::IValue> pending{root};
  std::unordered_set<const void*> seen;  // containers may be shared, or even hold themselves
  while (!pending.empty()) {
    const c10::IValue value = std::move(pending.back());
    pending.pop_back();
    if (value.isPtrType() && !seen.insert(value.internalToPointer()).second) continue;
    if (value.isTensor()) {
      const torch::Tensor& tensor = value.toTensor();
      if (!tensor.defined()) continue;
      if (tensor.layout() != torch::kStrided || tensor.is_quantized() || !tensor.is_cpu()) {
        throw refuse("holds a tensor that is not a dense CPU tensor");
      }
      const std::optional<uint64_t> extent = tensor_extent(tensor);
      if (!extent) throw refuse("holds a tensor with negative or overflowing sizes or strides");
      if (*extent == 0) continue;
      const uint64_t claimed = tensor.storage().nbytes();
      const auto entry = entries.find(tensor.storage().data());
      if (entry == entries.end() || *extent > claimed || claimed > entry->second) {
        throw refuse("holds a tensor of " + std::to_string(*extent) +
                     " bytes whose data in the file is shorter");
      }
    } else if (value.isGenericDict()) {
      for (const auto& item : value.toGenericDict()) {
        pending.push_back(item.key());
        pending.push_back(item.value());
      }
    } else if (value.isList()) {
      for (const c10::IValue& item : value.toListRef()) pending.push_back(item);
    } else if (value.isTuple()) {
      for (const c10::IValue& item : value.toTupleRef().elements()) pending.push_back(item);
    } else if (value.isObject()) {
      for (const c10::IValue& item : value.toObjectRef().slots()) pending.push_back(item);
    }
  }
}

// What torch::pickle_load does with an archive (readArchiveAndTensors), over TorchArchive: the
// pickle's claims checked first (pickle_scan.h), every tensor kept on the CPU whatever device
// the file names, then checked.
c10::IValue unpickle_archive(TorchArchive& archive) {
  const uint64_t version = format_version(archive);
  const auto [pickle, pickle_size] = archive.read("data.pkl");
  const char* const bytes = static_cast<const char*>(pickle.get());
  check_pickle_claims(std::string_view(bytes, pickle_size), archive.what());
  size_t position = 0;
  const auto read = [&, size = pickle_size](char* buffer, size_t length) -> size_t {
    length = std::min(length, size - position);
    if (length > 0) std::memcpy(buffer, bytes + position, length);
    position += length;
    return length;
  };
  EntrySizes entries;
  const auto read_entry = [&](const std::string& name) {
    auto [data, size] = archive.read("data/" + name);
    entries[data.get()] = size;
    return std::move(data);
  };
  torch::jit::Unpickler unpickler(read, /*type_resolver=*/nullptr, /*obj_loader=*/nullptr,
                                  read_entry, torch::Device(torch::kCPU));
  unpickler.set_version(version);
  const c10::IValue value = unpickler.parse_ivalue();
  check_tensors(value, entries, archive);
  return value;
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
  char magic[4] = {};
  in.read(magic, sizeof magic);
  if (std::string_view(magic, static_cast<size_t>(in.gcount())) != "PK\x03\x04") {
    throw Error(ErrorKind::runtime, what + " is not a torch.save archive (a zip file): it is "
                                           "truncated or corrupt, or not a checkpoint");
  }
  TorchArchive archive(path, what);
  try {
    return unpickle_archive(archive);
  } catch (const Error&) {
    throw;
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
