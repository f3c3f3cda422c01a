// Weights files: a round trip restores the exact model; bad files are refused with the reason.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ddpm/error.h"
#include "eval/feature_stats.h"
#include "formats/weights.h"
#include "model/unet.h"
#include "test_support.h"

namespace ddpm {
namespace {

class Weights : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("ddpm_weights_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(folder_);
    model_config_ = testing::small_model_config();
    data_config_ = testing::image_config(1, 16, 16);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string load_error(UNet& model, const std::filesystem::path& path) {
    try {
      load_weights(*model, path);
      return "";
    } catch (const Error& error) {
      return error.what();
    }
  }

  std::filesystem::path folder_;
  ModelConfig model_config_;
  DataConfig data_config_;
};

TEST_F(Weights, RoundTripRestoresTheSameOutputs) {
  torch::manual_seed(1);
  UNet original(model_config_, data_config_);
  {
    torch::NoGradGuard no_grad;
    for (auto& parameter : original->parameters()) parameter.normal_(0.0, 0.1);
  }
  const auto path = folder_ / "weights.pt";
  save_weights(*original, path);

  torch::manual_seed(2);
  UNet restored(model_config_, data_config_);
  load_weights(*restored, path);
  original->eval();
  restored->eval();
  const auto x = torch::randn({2, 1, 16, 16});
  const auto t = torch::tensor({5, 600});
  EXPECT_TRUE(torch::equal(original->forward(x, t), restored->forward(x, t)));
  // Nothing but the final file is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(folder_),
                          std::filesystem::directory_iterator()),
            1);
}

TEST_F(Weights, TruncatedAndMissingFilesAreRefused) {
  UNet model(model_config_, data_config_);
  const auto path = folder_ / "weights.pt";
  save_weights(*model, path);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  const auto truncated = load_error(model, path);
  EXPECT_NE(truncated.find("weights.pt"), std::string::npos) << truncated;
  EXPECT_NE(truncated.find("truncated or corrupt"), std::string::npos) << truncated;
  const auto missing = load_error(model, folder_ / "nothing.pt");
  EXPECT_NE(missing.find("nothing.pt"), std::string::npos) << missing;
}

TEST_F(Weights, WeightsOfAnotherModelAreRefused) {
  UNet model(model_config_, data_config_);
  const auto path = folder_ / "weights.pt";
  save_weights(*model, path);
  ModelConfig wider = model_config_;
  wider.base_channels = 32;
  UNet other(wider, data_config_);
  const auto message = load_error(other, path);
  EXPECT_NE(message.find("different model config"), std::string::npos) << message;
}

TEST_F(Weights, UnwritableFolderIsAClearError) {
  UNet model(model_config_, data_config_);
  try {
    save_weights(*model, folder_ / "no" / "such" / "folder" / "weights.pt");
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot write"), std::string::npos);
  }
}

// A torch.save archive states sizes that LibTorch allocates and reads by; a file that claims
// more than it holds is refused first. Both files are ours with a few bytes changed.
class ArchiveClaims : public Weights {
 protected:
  // A dict with one tensor of 65537 floats (256 KiB), as write_pickle_file writes it.
  std::string archive() const {
    c10::Dict<std::string, torch::Tensor> dict;
    dict.insert("w", torch::ones({65537}));
    const std::vector<char> bytes = pickle_for_python(c10::IValue(dict));
    return std::string(bytes.begin(), bytes.end());
  }
  std::filesystem::path write(const std::string& name, const std::string& bytes) const {
    std::ofstream(folder_ / name, std::ios::binary) << bytes;
    return folder_ / name;
  }
  static std::string read_error(const std::filesystem::path& file) {
    return testing::error_of([&] { read_pickle_file(file, "archive '" + file.string() + "'"); });
  }
};

TEST_F(ArchiveClaims, ATensorLargerThanItsDataIsRefusedBeforeAnyRead) {
  // The element count of the storage and the tensor's size, pickled as BININT 65537, become
  // 2^31 - 1: a tensor of 8 GiB over its 256 KiB entry, which LibTorch would hand back as is.
  std::string bytes = archive();
  const std::string count("J\x01\x00\x01\x00", 5), claim("J\xff\xff\xff\x7f", 5);
  int patched = 0;
  for (size_t at = bytes.find(count); at != std::string::npos; at = bytes.find(count, at + 1)) {
    bytes.replace(at, count.size(), claim);
    ++patched;
  }
  ASSERT_EQ(patched, 2);
  const std::string message = read_error(write("tensor.pt", bytes));
  EXPECT_CONTAINS(message, "tensor.pt");
  EXPECT_CONTAINS(message, "holds a tensor of 8589934588 bytes whose data in the file is shorter");
  EXPECT_CONTAINS(testing::error_of([&] { load_feature_stats(folder_ / "tensor.pt"); }),
                  "stats file '" + (folder_ / "tensor.pt").string() + "' holds a tensor");
}

TEST_F(ArchiveClaims, ACompressedEntryIsRefusedBeforeAnythingIsAllocated) {
  // The central directory's record of the tensor's entry says: deflated, 4 GiB once extracted
  // (a decompression bomb's claim; LibTorch's reader would allocate it all before inflating).
  std::string bytes = archive();
  size_t record = std::string::npos;
  for (size_t at = bytes.find("PK\x01\x02"); at != std::string::npos;
       at = bytes.find("PK\x01\x02", at + 1)) {
    const size_t name_length = uint8_t(bytes[at + 28]) | uint8_t(bytes[at + 29]) << 8;
    if (std::string_view(bytes).substr(at + 46, name_length).ends_with("/data/0")) record = at;
  }
  ASSERT_NE(record, std::string::npos);
  bytes[record + 10] = 8;  // deflate
  bytes.replace(record + 24, 4, "\xf0\xff\xff\xff", 4);
  const std::string message = read_error(write("bomb.pt", bytes));
  EXPECT_CONTAINS(message, "bomb.pt");
  EXPECT_CONTAINS(message, "has a compressed entry");
  EXPECT_CONTAINS(message, "zip -0");
}

TEST_F(ArchiveClaims, OnlyZipArchivesAreRead) {
  // A bare pickle would go to LibTorch's unpickler without any archive to check it against.
  const std::string message = read_error(write("raw.pkl", std::string("\x80\x02}q\x00.", 6)));
  EXPECT_CONTAINS(message, "is not a torch.save archive");
}

}  // namespace
}  // namespace ddpm
