// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON header {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]},
// ..., "__metadata__": {text: text}}, then the data buffer that the offsets index (END
// exclusive). This half reads and checks the header, without LibTorch, so that it is fuzzed on
// its own (tests/fuzz/); safetensors.h reads and writes the tensors.
//
// These are files from the internet: every check runs before anything is allocated by a size
// the file states, and every violation is a ddpm::Error (runtime) naming the file and tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ddpm {

// The reference implementation's cap on the header length.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;            // BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32,
                                // F32, F64, I64 or U64
  std::vector<int64_t> shape;   // row-major; [] is a scalar
  uint64_t begin = 0, end = 0;  // byte offsets into the data buffer, end exclusive
};

struct SafetensorsHeader {
  uint64_t data_start = 0;                   // file offset of the data buffer: 8 + N
  std::vector<SafetensorsTensorInfo> tensors;  // in buffer order
  std::map<std::string, std::string> metadata;
};

// Bytes per element of a dtype; 0 for a name that is not one of the dtypes above.
size_t safetensors_dtype_size(const std::string& dtype);

// N from the file's first 8 bytes (`first_bytes` holds at least them), checked against the
// file's size and the format's cap. Throws naming `file` when the file is shorter than 8 bytes
// or N does not fit.
uint64_t safetensors_header_length(std::string_view first_bytes, uint64_t file_size,
                                   const std::string& file);

// Parses and checks the N header bytes for a data buffer of `data_size` bytes: valid JSON
// object starting with '{', no duplicate names, every entry with a known dtype, a shape of
// non-negative integers and two offsets whose difference is dtype size x elements, entries
// tiling the buffer exactly (no holes, no overlaps, nothing after the last), __metadata__ of
// text values. Throws naming `file` and the tensor.
SafetensorsHeader parse_safetensors_header(std::string_view header, uint64_t data_size,
                                           const std::string& file);

// The whole header of a file holding `tensors` (their begin/end already laid out) and
// `metadata`: the 8 length bytes, then the JSON padded with spaces to a multiple of 8 bytes, as
// the reference writer does.
std::string make_safetensors_header(const std::vector<SafetensorsTensorInfo>& tensors,
                                    const std::map<std::string, std::string>& metadata);

// `text` cut to `limit` characters with control and non-ASCII bytes escaped as \xNN: a name
// from a hostile file, safe to print.
std::string printable_name(std::string_view text, size_t limit = 120);

}  // namespace ddpm
