// safetensors: round trips, files written by the reference Python library, and every violation of
// the format refused with a message that names the file and the tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ddpm/error.h"
#include "formats/safetensors.h"
#include "formats/safetensors_header.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtures = fs::path(DDPM_SOURCE_DIR) / "tests" / "data" / "safetensors";

std::string le64(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// A file of the header `json` (its real length unless `stated_length`) and `data_bytes` bytes.
fs::path craft(const fs::path& folder, const std::string& name, const std::string& json,
               size_t data_bytes, std::optional<uint64_t> stated_length = std::nullopt) {
  const fs::path file = folder / name;
  std::ofstream out(file, std::ios::binary);
  out << le64(stated_length.value_or(json.size())) << json << std::string(data_bytes, '\x01');
  return file;
}

std::string read_error(const fs::path& file) {
  try {
    read_safetensors(file);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(Safetensors, RoundTripKeepsNamesShapesValuesAndMetadata) {
  testing::TempDir folder("safetensors_round_trip");
  std::map<std::string, torch::Tensor> tensors = {
      {"down_blocks.0.resnets.0.conv1.weight", torch::randn({4, 3, 3, 3})},
      {"scalar", torch::tensor(2.5)},
      {"empty", torch::zeros({0, 5})},
      {"half_input", torch::tensor({0.5, -3.0}, torch::kFloat16)}};
  const fs::path file = folder.path() / "weights.safetensors";
  write_safetensors(file, tensors);
  const SafetensorsContents contents = read_safetensors(file);
  ASSERT_EQ(contents.tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const torch::Tensor& read = contents.tensors.at(name);
    EXPECT_EQ(read.scalar_type(), torch::kFloat32) << name;
    EXPECT_TRUE(torch::equal(read, tensor.to(torch::kFloat32))) << name;
  }
  EXPECT_EQ(contents.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  // The reference writer's layout: the header padded to 8 bytes, nothing after the data.
  std::ifstream in(file, std::ios::binary);
  std::string first(8, '\0');
  in.read(first.data(), 8);
  const uint64_t length = safetensors_header_length(first, fs::file_size(file), file.string());
  EXPECT_EQ(length % 8, 0u);
  EXPECT_EQ(fs::file_size(file), 8 + length + (4 * 108 + 4 + 0 + 4 * 2));
}

// Files written by the safetensors Python library (tests/data/safetensors/valid_*): an
// independent writer, read back to the values it was given.
TEST(Safetensors, ReadsTheReferenceLibrarysFilesInEveryFloatType) {
  const auto f32 = read_safetensors(kFixtures / "valid_f32.safetensors");
  EXPECT_TRUE(torch::equal(f32.tensors.at("conv.weight"),
                           torch::arange(6, torch::kFloat32).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(f32.tensors.at("conv.bias"), torch::tensor({0.5f, -1.0f})));
  EXPECT_EQ(f32.metadata.at("format"), "pt");
  // F16 1.5, -2.0 and BF16 3.0, 0.25 are exact in float32.
  const auto halves = read_safetensors(kFixtures / "valid_f16_bf16.safetensors");
  EXPECT_TRUE(torch::equal(halves.tensors.at("a"), torch::tensor({1.5f, -2.0f})));
  EXPECT_TRUE(torch::equal(halves.tensors.at("b"), torch::tensor({3.0f, 0.25f}).reshape({2, 1})));
  EXPECT_TRUE(read_safetensors(kFixtures / "valid_no_tensors.safetensors").tensors.empty());
  // Integers are valid safetensors but no model weight: refused, naming the tensor.
  const std::string message = read_error(kFixtures / "valid_scalar_empty_int.safetensors");
  EXPECT_CONTAINS(message, "tensor 'ints' has dtype I64");
}

struct Violation {
  std::string name;
  std::string header;
  size_t data_bytes;
  std::string expected;  // in the message, with the file's name
};

class SafetensorsViolation : public ::testing::TestWithParam<Violation> {};

TEST_P(SafetensorsViolation, IsAClearErrorNamingTheFileAndTensor) {
  const Violation& violation = GetParam();
  testing::TempDir folder("safetensors_violation");
  const fs::path file = craft(folder.path(), violation.name + ".safetensors", violation.header,
                              violation.data_bytes);
  const std::string message = read_error(file);
  EXPECT_CONTAINS(message, file.string());
  EXPECT_CONTAINS(message, violation.expected);
}

const std::string kGood = R"("dtype": "F32", "shape": [2], "data_offsets": )";

INSTANTIATE_TEST_SUITE_P(
    EveryRule, SafetensorsViolation,
    ::testing::Values(
        Violation{"not_json", R"({"w": {"dtype": "F32",)", 0, "not valid JSON"},
        Violation{"no_brace", R"(  {"w": 1})", 0, "does not start with '{'"},
        Violation{"not_object", R"({"w": 5})", 0, "tensor 'w' is not an object"},
        Violation{"duplicate", R"({"w": {)" + kGood + R"([0, 8]}, "w": {)" + kGood + "[8, 16]}}",
                  16, "names 'w' twice"},
        Violation{"duplicate_field", R"({"w": {"dtype": "F32", "dtype": "F16", "shape": [2],
                  "data_offsets": [0, 8]}})", 8, "names 'dtype' twice"},
        Violation{"unknown_dtype", R"({"w": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}})",
                  8, "tensor 'w' has the unknown dtype 'F7'"},
        Violation{"no_dtype", R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8,
                  "tensor 'w' has no dtype"},
        Violation{"size_mismatch", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                  8, "tensor 'w' has 8 bytes of data, but its dtype F32 and shape need 12"},
        Violation{"negative_shape", R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
                  8, "expected a non-negative integer"},
        Violation{"fractional_shape", R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})",
                  8, "expected a non-negative integer"},
        Violation{"overflowing_shape",
                  R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904],
                  "data_offsets": [0, 8]}})", 8, "overflows 64 bits"},
        Violation{"backwards", R"({"w": {)" + kGood + "[8, 0]}}", 8, "ends (0) before it begins (8)"},
        Violation{"outside", R"({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}})",
                  8, "outside the data buffer of 8 bytes"},
        // A 4 TiB tensor in an 8-byte buffer: refused before torch::empty would allocate it.
        Violation{"huge_claim", R"({"w": {"dtype": "F32", "shape": [1099511627776],
                  "data_offsets": [0, 4398046511104]}})", 8, "outside the data buffer of 8 bytes"},
        Violation{"overlap", R"({"a": {)" + kGood + R"([0, 8]}, "b": {)" + kGood + "[4, 12]}}",
                  12, "tensor 'b' overlaps tensor 'a'"},
        Violation{"hole", R"({"a": {)" + kGood + R"([0, 8]}, "b": {)" + kGood + "[12, 20]}}", 20,
                  "tensor 'b' begins at byte 12, leaving a hole of 4 bytes"},
        Violation{"trailing", R"({"a": {)" + kGood + "[0, 8]}}", 12,
                  "has 4 bytes after the last tensor's data"},
        Violation{"no_offsets", R"({"w": {"dtype": "F32", "shape": [2]}})", 8,
                  "tensor 'w' has no data_offsets"},
        Violation{"metadata", R"({"__metadata__": {"format": 1}})", 0,
                  "__metadata__ entry 'format' is not text"},
        Violation{"deep", R"({"w": {"dtype": "F32", "shape": [[2]], "data_offsets": [0, 8]}})", 8,
                  "nests deeper"},
        Violation{"hostile_name", "{\"a\\u0007b\": 5}", 0, "tensor 'a\\x07b' is not an object"}),
    [](const ::testing::TestParamInfo<Violation>& info) { return info.param.name; });

TEST(Safetensors, LengthsThatDoNotFitAreRefusedBeforeAnyAllocation) {
  testing::TempDir folder("safetensors_lengths");
  const fs::path tiny = folder.path() / "tiny.safetensors";
  std::ofstream(tiny, std::ios::binary) << "abc";
  EXPECT_CONTAINS(read_error(tiny), "has 3 bytes, fewer than the 8");
  // A length of ~2^64: the file would have to be that long.
  const fs::path huge = craft(folder.path(), "huge.safetensors", "{}", 0, ~uint64_t{0} - 3);
  EXPECT_CONTAINS(read_error(huge), "longer than the file");
  // A file longer than the cap (sparse: no disk used) that states a header of 101 MB.
  const fs::path capped = craft(folder.path(), "capped.safetensors", "{}", 0, 101'000'000);
  fs::resize_file(capped, 102'000'000);
  EXPECT_CONTAINS(read_error(capped), "more than the format allows (100000000)");
  // Truncated: the header promises data the file does not have.
  const fs::path file = folder.path() / "truncated.safetensors";
  write_safetensors(file, {{"w", torch::ones({64})}});
  fs::resize_file(file, fs::file_size(file) - 10);
  EXPECT_CONTAINS(read_error(file), "tensor 'w' ends at byte 256, outside the data buffer");
  EXPECT_CONTAINS(read_error(folder.path() / "missing.safetensors"), "cannot be read");
}

}  // namespace
}  // namespace ddpm
