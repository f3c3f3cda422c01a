// The image folder scan and the DataLoader. Each fixture image carries its id in its left half and
// a fixed marker in its right half, so a batch can be read back as (id, flipped) pairs: that is
// how determinism, resuming, sharding, flipping and the skipping of bad files are checked.
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "data/class_folders.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "ddpm/error.h"
#include "formats/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

using testing::error_of;

namespace fs = std::filesystem;
constexpr int kSide = 8;
constexpr int kMarker = 250;

struct Seen {
  int id;
  bool flipped;
  bool operator<(const Seen& other) const { return id < other.id; }
};

std::vector<Seen> decode(const torch::Tensor& batch) {
  std::vector<Seen> seen;
  const torch::Tensor levels = batch.add(1).mul(127.5).round().to(torch::kInt);
  for (int64_t n = 0; n < batch.size(0); ++n) {
    const int left = levels[n][0][3][0].item<int>(), right = levels[n][0][3][kSide - 1].item<int>();
    const bool flipped = left == kMarker;
    seen.push_back({(flipped ? right : left) / 3, flipped});
  }
  return seen;
}

std::vector<int> ids(const std::vector<Seen>& seen) {
  std::vector<int> out;
  for (const Seen& s : seen) out.push_back(s.id);
  return out;
}

class DataLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = fs::temp_directory_path() / ("ddpm_dataset_test_" + std::to_string(::getpid()));
    fs::remove_all(folder_);
    fs::create_directories(folder_);
    data_.path = folder_.string();
    data_.height = data_.width = kSide;
    data_.channels = 1;
    data_.random_flip = false;
    data_.workers = 2;
    data_.cache_mb = 0;
  }
  void TearDown() override { fs::remove_all(folder_); }

  void write_images(int count) {
    for (int id = 0; id < count; ++id) {
      Image image{kSide, kSide, 1, {}};
      for (int y = 0; y < kSide; ++y)
        for (int x = 0; x < kSide; ++x)
          image.pixels.push_back(uint8_t(x < kSide / 2 ? 3 * id : kMarker));
      // stb directly: write_png's fsync per file would dominate the test's run time.
      const fs::path path = folder_ / ("image_" + std::to_string(id) + ".png");
      ASSERT_TRUE(stbi_write_png(path.c_str(), kSide, kSide, 1, image.pixels.data(), 0));
    }
  }

  std::vector<torch::Tensor> take(DataLoader& loader, int count) {
    std::vector<torch::Tensor> batches;
    for (int i = 0; i < count; ++i) batches.push_back(loader.next());
    return batches;
  }

  fs::path folder_;
  DataConfig data_;
};

using Dataset = DataLoaderTest;

void expect_same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "batch " << i;
}

TEST_F(Dataset, ScanFindsImagesRecursivelyAndSorted) {
  for (const char* name : {"b.PNG", "a.jpg", "sub/c.Jpeg", "sub/deeper/d.bmp", "e.tga", "f.gif",
                           "notes.txt", "noextension", "folder.png/inside.gif"}) {
    fs::create_directories((folder_ / name).parent_path());
    std::ofstream(folder_ / name) << "";
  }
  const std::vector<fs::path> expected = {folder_ / "a.jpg",
                                          folder_ / "b.PNG",
                                          folder_ / "e.tga",
                                          folder_ / "f.gif",
                                          folder_ / "folder.png/inside.gif",
                                          folder_ / "sub/c.Jpeg",
                                          folder_ / "sub/deeper/d.bmp"};
  EXPECT_EQ(scan_image_folder(folder_), expected);
}

// The scan's report: images by format (jpeg counted as jpg, any case) and every other file by
// extension with its first names, for the log line of every command that scans a folder; class
// folders add up their classes' reports and count what lies beside the class folders.
TEST_F(Dataset, ScanReportsFormatsAndThePassedOverFiles) {
  for (const char* name : {"b.PNG", "a.jpg", "sub/c.Jpeg", "e.png", "1.txt", "2.txt", "3.txt",
                           "4.TXT", "README", "photo.webp", "scan.tif", "b.TIFF", "x.psd"}) {
    fs::create_directories((folder_ / name).parent_path());
    std::ofstream(folder_ / name) << "";
  }
  const ImageFolderScan scan = scan_image_folder_report(folder_);
  EXPECT_EQ(scan.images.size(), 7u);
  EXPECT_EQ(scan.formats, (std::map<std::string, int64_t>{
                              {"jpg", 2}, {"png", 2}, {"tif", 2}, {"webp", 1}}));
  EXPECT_EQ(scan.passed_over, (std::map<std::string, int64_t>{
                                  {"", 1}, {".psd", 1}, {".txt", 4}}));
  EXPECT_EQ(scan.examples.at(".txt").size(), 3u);
  EXPECT_EQ(describe_scan(scan, "DIR"),
            "7 images in 'DIR' (jpg 2, png 2, tif 2, webp 1); passed over 6 other files: no "
            "extension 1 (README), .psd 1 (x.psd), .txt 4 (" + scan.examples.at(".txt")[0] +
                ", " + scan.examples.at(".txt")[1] + ", " + scan.examples.at(".txt")[2] +
                ", ...)");

  const fs::path classes = folder_ / "classes";
  for (const char* name : {"cat/1.png", "cat/x.txt", "dog/2.jpg", "labels.csv"}) {
    fs::create_directories((classes / name).parent_path());
    std::ofstream(classes / name) << "";
  }
  const ClassFolders folders = scan_class_folders(classes);
  EXPECT_EQ(describe_scan(folders.report, "C"),
            "2 images in 'C' (jpg 1, png 1); passed over 2 other files: .csv 1 (labels.csv), "
            ".txt 1 (x.txt)");
}

// A folder of more image files than data.max_files is refused during the scan, for plain and
// class folders, naming the limit and the key that raises it; at the limit it is taken.
TEST_F(Dataset, AFolderOfMoreFilesThanTheLimitIsRefusedNamingTheKey) {
  for (int i = 0; i < 12; ++i) {
    const fs::path file =
        folder_ / ("class_" + std::to_string(i % 2)) / (std::to_string(i) + ".png");
    fs::create_directories(file.parent_path());
    std::ofstream(file) << "";
  }
  EXPECT_EQ(scan_image_folder(folder_, 12).size(), 12u);
  const std::string plain = error_of([&] { scan_image_folder(folder_, 11); });
  EXPECT_CONTAINS(plain, "data.max_files");
  EXPECT_CONTAINS(plain, "holds more than 11 image files, the limit");
  EXPECT_CONTAINS(plain, "raise data.max_files");
  EXPECT_EQ(scan_class_folders(folder_, 12).files.size(), 12u);
  const std::string classes = error_of([&] { scan_class_folders(folder_, 7); });
  EXPECT_CONTAINS(classes, "the class folders of '" + folder_.string() + "' hold more than 7");
  EXPECT_CONTAINS(classes, "raise data.max_files");
}

TEST_F(Dataset, ScanErrorsNameThePath) {
  const std::string missing = error_of([&] { scan_image_folder(folder_ / "nowhere"); });
  EXPECT_NE(missing.find("nowhere' does not exist"), std::string::npos) << missing;
  std::ofstream(folder_ / "file.png") << "";
  const std::string file = error_of([&] { scan_image_folder(folder_ / "file.png"); });
  EXPECT_NE(file.find("file.png' is not a folder"), std::string::npos) << file;
  fs::create_directories(folder_ / "empty");
  std::ofstream(folder_ / "empty" / "readme.txt") << "no images";
  const std::string empty = error_of([&] { scan_image_folder(folder_ / "empty"); });
  EXPECT_NE(empty.find("empty' holds no image files"), std::string::npos) << empty;
}

TEST_F(DataLoaderTest, BatchesDependOnTheSeedOnlyNotOnWorkersOrCache) {
  write_images(40);
  data_.random_flip = true;
  const auto files = scan_image_folder(folder_);
  data_.workers = 1;
  DataLoader one(files, data_, 8, 7);
  data_.workers = 3;
  data_.cache_mb = 1;
  DataLoader three(files, data_, 8, 7);
  EXPECT_FALSE(one.caches_images());
  EXPECT_TRUE(three.caches_images());
  ASSERT_EQ(one.batches_per_epoch(), 5);
  const auto expected = take(one, 12);
  expect_same(take(three, 12), expected);
  DataLoader other_seed(files, data_, 8, 8);
  EXPECT_FALSE(torch::equal(other_seed.next(), expected[0]));
  // Every epoch is a permutation of all 40 images; successive epochs differ in order.
  for (int epoch = 0; epoch < 2; ++epoch) {
    std::vector<int> seen;
    for (int b = 0; b < 5; ++b) {
      const auto batch_ids = ids(decode(expected[epoch * 5 + b]));
      seen.insert(seen.end(), batch_ids.begin(), batch_ids.end());
    }
    std::vector<int> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    for (int id = 0; id < 40; ++id) EXPECT_EQ(sorted[id], id);
    if (epoch == 0) {
      EXPECT_NE(ids(decode(expected[5])), std::vector<int>(seen.begin(), seen.begin() + 8));
    }
  }
}

TEST_F(DataLoaderTest, RestoreContinuesWithExactlyTheSameBatches) {
  write_images(40);
  data_.random_flip = true;
  const auto files = scan_image_folder(folder_);
  DataLoader uninterrupted(files, data_, 8, 3);
  const auto expected = take(uninterrupted, 9);  // crosses into the second epoch
  DataLoader first(files, data_, 8, 3);
  take(first, 3);
  const LoaderState saved = first.state();
  EXPECT_EQ(saved, (LoaderState{0, 3}));
  take(first, 4);
  EXPECT_EQ(first.state(), (LoaderState{1, 2}));
  DataLoader resumed(files, data_, 8, 3);
  resumed.restore(saved);
  expect_same(take(resumed, 6), std::vector<torch::Tensor>(expected.begin() + 3, expected.end()));
  first.restore(saved);  // rewinding a running loader works too
  expect_same(take(first, 2),
              std::vector<torch::Tensor>(expected.begin() + 3, expected.begin() + 5));
  EXPECT_THROW(resumed.restore({0, 5}), Error);
}

TEST_F(DataLoaderTest, RanksSplitEachGlobalBatchIntoDisjointParts) {
  write_images(40);
  data_.random_flip = true;
  const auto files = scan_image_folder(folder_);
  DataLoader alone(files, data_, 8, 11);
  DataLoader rank0(files, data_, 8, 11, 0, 2);
  DataLoader rank1(files, data_, 8, 11, 1, 2);
  ASSERT_EQ(rank0.batches_per_epoch(), 5);
  std::set<int> seen0, seen1;
  for (int b = 0; b < 7; ++b) {  // into the second epoch
    const torch::Tensor part0 = rank0.next(), part1 = rank1.next();
    ASSERT_EQ(part0.size(0), 4);
    // Together the ranks see exactly what one process sees, flips included.
    EXPECT_TRUE(torch::equal(torch::cat({part0, part1}), alone.next())) << "batch " << b;
    if (b < 5) {
      for (int id : ids(decode(part0))) seen0.insert(id);
      for (int id : ids(decode(part1))) seen1.insert(id);
    }
  }
  EXPECT_EQ(seen0.size(), 20u);
  EXPECT_EQ(seen1.size(), 20u);
  std::set<int> all = seen0;
  all.insert(seen1.begin(), seen1.end());
  EXPECT_EQ(all.size(), 40u);
  EXPECT_EQ(rank1.state(), alone.state());
  // The global batch must split evenly.
  EXPECT_THROW(DataLoader(files, data_, 9, 11, 0, 2), Error);
}

TEST_F(DataLoaderTest, BatchesAreFloatInRangeAndResizedToTheConfig) {
  write_images(12);
  data_.channels = 3;
  data_.height = data_.width = 4;
  DataLoader loader(scan_image_folder(folder_), data_, 6, 0);
  for (int i = 0; i < 3; ++i) {
    const torch::Tensor batch = loader.next();
    ASSERT_EQ(batch.sizes(), torch::IntArrayRef({6, 3, 4, 4}));
    EXPECT_EQ(batch.scalar_type(), torch::kFloat);
    EXPECT_EQ(batch.device(), torch::Device(torch::kCPU));
    EXPECT_GE(batch.min().item<float>(), -1.0f);
    EXPECT_LE(batch.max().item<float>(), 1.0f);
    EXPECT_EQ(batch[0][0][0][3].item<float>(), kMarker / 127.5f - 1.0f);  // gray -> RGB, 2x area
  }
}

TEST_F(DataLoaderTest, FlipsAboutHalfWhenEnabledAndNeverWhenDisabled) {
  write_images(40);
  const auto files = scan_image_folder(folder_);
  for (bool enabled : {false, true}) {
    data_.random_flip = enabled;
    DataLoader loader(files, data_, 10, 5);
    int flipped = 0;
    for (int b = 0; b < 20; ++b)
      for (const Seen& seen : decode(loader.next())) flipped += seen.flipped;
    if (enabled) {
      EXPECT_GT(flipped, 200 * 0.35);
      EXPECT_LT(flipped, 200 * 0.65);
    } else {
      EXPECT_EQ(flipped, 0);
    }
  }
}

TEST_F(DataLoaderTest, BadFilesAreSkippedDeterministicallyAndCounted) {
  write_images(20);
  std::ifstream in(folder_ / "image_0.png", std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(folder_ / "bad_empty.png") << "";
  std::ofstream(folder_ / "bad_truncated.png", std::ios::binary) << png.substr(0, png.size() / 2);
  std::ofstream(folder_ / "bad_text.jpg") << "not a picture";
  const auto files = scan_image_folder(folder_);
  ASSERT_EQ(files.size(), 23u);
  data_.workers = 1;
  DataLoader one(files, data_, 5, 2);
  data_.workers = 3;
  data_.cache_mb = 1;
  DataLoader three(files, data_, 5, 2);
  const auto expected = take(one, 8);
  expect_same(take(three, 8), expected);
  for (const auto& batch : expected)
    for (int id : ids(decode(batch))) EXPECT_TRUE(id >= 0 && id < 20) << id;
  EXPECT_EQ(one.skipped_files(), 3);
  EXPECT_EQ(three.skipped_files(), 3);
  const auto examples = one.skipped_examples();
  ASSERT_EQ(examples.size(), 3u);
  for (const std::string& example : examples) EXPECT_NE(example.find("bad_"), std::string::npos);
}

// An image of more pixels than data.max_image_pixels is skipped like an unreadable one, with an
// example naming the key; raised, the same image is read.
TEST_F(DataLoaderTest, ImagesOverTheConfiguredPixelLimitAreSkippedNamingTheKey) {
  write_images(8);
  const std::vector<uint8_t> large(size_t{4} * kSide * kSide, 128);
  ASSERT_TRUE(stbi_write_png((folder_ / "large.png").c_str(), 2 * kSide, 2 * kSide, 1,
                             large.data(), 0));
  const auto files = scan_image_folder(folder_);
  data_.max_image_pixels = int64_t{kSide} * kSide;
  DataLoader limited(files, data_, 3, 0);
  take(limited, 3);  // one epoch of 9 files
  EXPECT_EQ(limited.skipped_files(), 1);
  ASSERT_EQ(limited.skipped_examples().size(), 1u);
  EXPECT_CONTAINS(limited.skipped_examples()[0], "large.png");
  EXPECT_CONTAINS(limited.skipped_examples()[0], "raise data.max_image_pixels");
  data_.max_image_pixels = int64_t{4} * kSide * kSide;
  DataLoader raised(files, data_, 3, 0);
  take(raised, 3);
  EXPECT_EQ(raised.skipped_files(), 0);
}

TEST_F(DataLoaderTest, TooFewReadableImagesIsAClearError) {
  write_images(3);
  for (int i = 0; i < 5; ++i) std::ofstream(folder_ / ("bad_" + std::to_string(i) + ".png")) << "x";
  DataLoader few(scan_image_folder(folder_), data_, 4, 0);
  // Which batch first runs short depends on where the bad files fall; within one epoch, one does.
  const std::string message = error_of([&] { take(few, 2); });
  EXPECT_NE(message.find("only 3 of the 8 image files"), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { few.next(); }), message);  // and it stays that way

  for (int i = 0; i < 3; ++i) fs::remove(folder_ / ("image_" + std::to_string(i) + ".png"));
  DataLoader none(scan_image_folder(folder_), data_, 1, 0);
  const std::string none_message = error_of([&] { none.next(); });
  EXPECT_NE(none_message.find("only 0 of the 5"), std::string::npos) << none_message;

  const std::string small = error_of([&] { DataLoader(scan_image_folder(folder_), data_, 6, 0); });
  EXPECT_NE(small.find("fewer than one batch of 6"), std::string::npos) << small;
}

TEST_F(DataLoaderTest, CachedEpochsDoNotReadFilesAgain) {
  write_images(16);
  data_.cache_mb = 1;
  DataLoader loader(scan_image_folder(folder_), data_, 4, 9);
  take(loader, 4);
  fs::remove_all(folder_);
  for (const auto& batch : take(loader, 8))
    for (int id : ids(decode(batch))) EXPECT_TRUE(id >= 0 && id < 16) << id;
  EXPECT_EQ(loader.skipped_files(), 0);
}

TEST_F(DataLoaderTest, StopsCleanlyWhenTheConsumerStopsEarly) {
  write_images(24);
  const auto files = scan_image_folder(folder_);
  data_.workers = 4;
  for (int taken : {0, 1, 3}) {
    DataLoader loader(files, data_, 2, 1);
    take(loader, taken);
  }  // destructors join the workers, which may be mid-batch or waiting on a full queue
  SUCCEED();
}

}  // namespace
}  // namespace ddpm
