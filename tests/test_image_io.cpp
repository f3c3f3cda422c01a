// Image I/O: every format and channel conversion against known pixel values (exact for lossless
// formats), 16-bit input, bad and oversized files, area resizing against a float64 reference,
// tensors, grids and PNG text chunks. Fixtures are written by stb_image_write or built byte by
// byte here (GIF, 16-bit PNG, oversized headers).
#include <gtest/gtest.h>
#include <stb_image.h>
#include <stb_image_write.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "ddpm/error.h"
#include "formats/image_io.h"
#include "formats/image_resize.h"
#include "formats/image_tensor.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using Bytes = std::string;

Image pattern(int height, int width, int channels, int salt = 0) {
  Image image{height, width, channels, {}};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        image.pixels.push_back(
            static_cast<uint8_t>((y * 53 + x * 29 + c * 71 + salt * 7 + 5) % 256));
      }
    }
  }
  return image;
}

// Bit-by-bit CRC-32 (independent of the table-driven one in the library) and PNG chunks.
uint32_t crc32_bitwise(const Bytes& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

Bytes be32(uint32_t value) {
  return {char(value >> 24), char(value >> 16), char(value >> 8), char(value)};
}

Bytes png_chunk(const Bytes& type, const Bytes& data) {
  return be32(static_cast<uint32_t>(data.size())) + type + data + be32(crc32_bitwise(type + data));
}

Bytes png_ihdr(uint32_t width, uint32_t height, int depth, int color_type) {
  return png_chunk("IHDR",
                   be32(width) + be32(height) + Bytes{char(depth), char(color_type), 0, 0, 0});
}

const Bytes kSignature("\x89PNG\r\n\x1a\n", 8);

// A zlib stream with one stored (uncompressed) deflate block.
Bytes zlib_stored(const Bytes& raw) {
  uint32_t a = 1, b = 0;
  for (unsigned char byte : raw) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  const uint16_t length = static_cast<uint16_t>(raw.size());
  return Bytes{0x78, 0x01, 0x01} + Bytes{char(length), char(length >> 8)} +
         Bytes{char(~length), char(~length >> 8)} + raw + be32((b << 16) | a);
}

// A zlib stream of `size` zero bytes in one fixed-Huffman deflate block: a literal zero, then
// copies of 258 bytes at distance 1 (13 bits each), so that 100 MB take 600 KB.
Bytes zlib_zeros(size_t size) {
  Bytes out{0x78, 0x01};
  uint64_t bits = 0;
  int pending = 0;
  const auto put = [&](uint32_t value, int length) {  // deflate packs bits from the lowest
    bits |= uint64_t{value} << pending;
    for (pending += length; pending >= 8; pending -= 8, bits >>= 8) out.push_back(char(bits));
  };
  const auto put_code = [&](uint32_t code, int length) {  // Huffman codes go highest bit first
    for (int i = length - 1; i >= 0; --i) put((code >> i) & 1u, 1);
  };
  put(1, 1);  // the final block
  put(1, 2);  // fixed Huffman codes
  put_code(0x30, 8);  // literal 0
  size_t left = size - 1;
  for (; left >= 258; left -= 258) {
    put_code(0xC5, 8);  // length 258 (code 285)
    put_code(0, 5);     // distance 1
  }
  for (; left > 0; --left) put_code(0x30, 8);
  put_code(0, 7);  // end of block
  if (pending > 0) put(0, 8 - pending);
  return out + be32(static_cast<uint32_t>(size % 65521) << 16 | 1);  // Adler-32 of zeros
}

// A black 8-bit grayscale PNG, side x side: every row is filter 0 and zero pixels.
Bytes black_png(uint32_t side) {
  return kSignature + png_ihdr(side, side, 8, 0) +
         png_chunk("IDAT", zlib_zeros(size_t{side} * (side + 1))) + png_chunk("IEND", "");
}

class ImageIo : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = fs::temp_directory_path() / ("ddpm_image_io_test_" + std::to_string(::getpid()));
    fs::create_directories(folder_);
  }
  void TearDown() override { fs::remove_all(folder_); }

  fs::path write_bytes(const std::string& name, const Bytes& bytes) {
    const fs::path path = folder_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  std::string read_error(const fs::path& path, int channels = 3) {
    try {
      read_image(path, channels);
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::runtime);
      return error.what();
    }
    ADD_FAILURE() << "read_image accepted " << path;
    return "";
  }

  fs::path folder_;
};

void expect_pixels(const Image& image, int height, int width, int channels,
                   const std::function<int(int y, int x, int c)>& expected) {
  ASSERT_EQ(image.height, height);
  ASSERT_EQ(image.width, width);
  ASSERT_EQ(image.channels, channels);
  ASSERT_EQ(image.pixels.size(), size_t(height) * width * channels);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        ASSERT_EQ(image.pixels[(size_t(y) * width + x) * channels + c], expected(y, x, c))
            << "at y=" << y << " x=" << x << " c=" << c;
      }
    }
  }
}

int luma(int r, int g, int b) { return int(std::lround(0.299 * r + 0.587 * g + 0.114 * b)); }

TEST_F(ImageIo, LosslessFormatsDecodeExactly) {
  using Writer = std::function<int(const char*, const Image&)>;
  const std::vector<std::pair<std::string, Writer>> formats = {
      {"png",
       [](const char* p, const Image& i) {
         return stbi_write_png(p, i.width, i.height, i.channels, i.pixels.data(), 0);
       }},
      {"bmp",
       [](const char* p, const Image& i) {
         return stbi_write_bmp(p, i.width, i.height, i.channels, i.pixels.data());
       }},
      {"tga", [](const char* p, const Image& i) {
         return stbi_write_tga(p, i.width, i.height, i.channels, i.pixels.data());
       }}};
  for (const auto& [extension, write] : formats) {
    for (int channels : {1, 3, 4}) {
      SCOPED_TRACE(extension + " with " + std::to_string(channels) + " channels");
      const Image original = pattern(5, 7, channels);
      const fs::path path = folder_ / ("image." + extension);
      ASSERT_TRUE(write(path.c_str(), original));
      const Image decoded = read_image(path, channels);
      expect_pixels(decoded, 5, 7, channels, [&](int y, int x, int c) {
        return original.pixels[(y * 7 + x) * channels + c];
      });
    }
  }
}

TEST_F(ImageIo, ChannelConversionsFollowBt601AndAlphaRules) {
  const Image rgba = pattern(3, 4, 4);
  const auto at = [&](int y, int x, int c) { return int(rgba.pixels[(y * 4 + x) * 4 + c]); };
  const fs::path rgba_path = folder_ / "rgba.png";
  write_png(rgba_path, rgba);
  expect_pixels(read_image(rgba_path, 1), 3, 4, 1,
                [&](int y, int x, int) { return luma(at(y, x, 0), at(y, x, 1), at(y, x, 2)); });
  expect_pixels(read_image(rgba_path, 3), 3, 4, 3, at);

  Image rgb = pattern(3, 4, 3, 1);
  const auto rgb_at = [&](int y, int x, int c) { return int(rgb.pixels[(y * 4 + x) * 3 + c]); };
  write_png(folder_ / "rgb.png", rgb);
  expect_pixels(read_image(folder_ / "rgb.png", 4), 3, 4, 4,
                [&](int y, int x, int c) { return c == 3 ? 255 : rgb_at(y, x, c); });
  expect_pixels(read_image(folder_ / "rgb.png", 1), 3, 4, 1, [&](int y, int x, int) {
    return luma(rgb_at(y, x, 0), rgb_at(y, x, 1), rgb_at(y, x, 2));
  });

  const Image gray = pattern(3, 4, 1, 2);
  const auto g = [&](int y, int x) { return int(gray.pixels[y * 4 + x]); };
  write_png(folder_ / "gray.png", gray);
  expect_pixels(read_image(folder_ / "gray.png", 3), 3, 4, 3,
                [&](int y, int x, int) { return g(y, x); });
  expect_pixels(read_image(folder_ / "gray.png", 4), 3, 4, 4,
                [&](int y, int x, int c) { return c == 3 ? 255 : g(y, x); });

  const Image gray_alpha = pattern(3, 4, 2, 3);
  const auto ga = [&](int y, int x, int c) { return int(gray_alpha.pixels[(y * 4 + x) * 2 + c]); };
  ASSERT_TRUE(stbi_write_png((folder_ / "ga.png").c_str(), 4, 3, 2, gray_alpha.pixels.data(), 0));
  expect_pixels(read_image(folder_ / "ga.png", 1), 3, 4, 1,
                [&](int y, int x, int) { return ga(y, x, 0); });
  expect_pixels(read_image(folder_ / "ga.png", 4), 3, 4, 4,
                [&](int y, int x, int c) { return ga(y, x, c == 3 ? 1 : 0); });
}

TEST_F(ImageIo, JpegDecodesWithinTolerance) {
  // A smooth image: JPEG at quality 95 keeps every pixel within 8 levels, on average within 2.
  for (int channels : {1, 3}) {
    Image smooth{16, 16, channels, {}};
    for (int y = 0; y < 16; ++y)
      for (int x = 0; x < 16; ++x)
        for (int c = 0; c < channels; ++c)
          smooth.pixels.push_back(uint8_t(20 + 6 * x + 3 * y + 20 * c));
    const fs::path path = folder_ / "smooth.jpg";
    ASSERT_TRUE(stbi_write_jpg(path.c_str(), 16, 16, channels, smooth.pixels.data(), 95));
    const Image decoded = read_image(path, channels);
    ASSERT_EQ(decoded.pixels.size(), smooth.pixels.size());
    double total = 0;
    for (size_t i = 0; i < smooth.pixels.size(); ++i) {
      const int difference = std::abs(int(decoded.pixels[i]) - int(smooth.pixels[i]));
      EXPECT_LE(difference, 8) << "sample " << i;
      total += difference;
    }
    EXPECT_LE(total / smooth.pixels.size(), 2.0);
  }
}

TEST_F(ImageIo, GifDecodesTheFirstFrame) {
  // 128-colour palette, so LZW codes stay 8 bits wide (clear 128, end 129) for a few pixels.
  const auto color = [](int i, int c) { return (i * (c + 1) * 37 + 11 * c) % 256; };
  Bytes gif = "GIF89a" + Bytes{4, 0, 3, 0, char(0xF6), 0, 0};
  for (int i = 0; i < 128; ++i)
    for (int c = 0; c < 3; ++c) gif.push_back(char(color(i, c)));
  const auto frame = [](int first_index) {
    Bytes codes{char(128)};
    for (int p = 0; p < 12; ++p) codes.push_back(char(first_index + p));
    codes.push_back(char(129));
    return Bytes{0x2C, 0, 0, 0, 0, 4, 0, 3, 0, 0, 7, char(codes.size())} + codes + Bytes(1, 0);
  };
  gif += frame(10) + frame(60) + ";";
  const fs::path path = write_bytes("anim.gif", gif);
  expect_pixels(read_image(path, 3), 3, 4, 3,
                [&](int y, int x, int c) { return color(10 + y * 4 + x, c); });
  expect_pixels(read_image(path, 4), 3, 4, 4,
                [&](int y, int x, int c) { return c == 3 ? 255 : color(10 + y * 4 + x, c); });
}

TEST_F(ImageIo, SixteenBitPngIsRoundedTo8Bit) {
  const std::vector<uint16_t> values = {0,     65535, 0x1234,          32640,
                                        32767, 128,   257 * 200 + 128, 65407};
  for (int color_type : {0, 2}) {  // gray, RGB
    const int channels = color_type == 0 ? 1 : 3;
    Bytes raw;
    for (int y = 0; y < 2; ++y) {
      raw.push_back(0);  // filter: none
      for (int x = 0; x < 4; ++x)
        for (int c = 0; c < channels; ++c) {
          const uint16_t v = values[(y * 4 + x + c) % values.size()];
          raw += Bytes{char(v >> 8), char(v)};
        }
    }
    const Bytes png = kSignature + png_ihdr(4, 2, 16, color_type) +
                      png_chunk("IDAT", zlib_stored(raw)) + png_chunk("IEND", "");
    const fs::path path = write_bytes("wide.png", png);
    expect_pixels(read_image(path, channels), 2, 4, channels, [&](int y, int x, int c) {
      return int(std::lround(values[(y * 4 + x + c) % values.size()] * 255.0 / 65535.0));
    });
  }
}

TEST_F(ImageIo, BadFilesAreRefusedWithTheirName) {
  write_png(folder_ / "good.png", pattern(16, 16, 3));
  std::ifstream in(folder_ / "good.png", std::ios::binary);
  const Bytes whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto expect_refused = [&](const fs::path& path, const std::string& reason) {
    const std::string message = read_error(path);
    EXPECT_NE(message.find(path.filename().string()), std::string::npos) << message;
    EXPECT_NE(message.find(reason), std::string::npos) << message;
  };
  expect_refused(write_bytes("empty.png", ""), "empty");
  expect_refused(write_bytes("truncated.png", whole.substr(0, whole.size() / 2)), "truncated");
  expect_refused(write_bytes("text.jpg", "this is not an image at all"), "not a readable");
  Bytes corrupt = whole;
  for (size_t i = 60; i < corrupt.size() - 20; ++i) corrupt[i] = char(i * 7);
  expect_refused(write_bytes("corrupt.png", corrupt), "corrupt");
  expect_refused(folder_ / "missing.png", "cannot be opened");
}

TEST_F(ImageIo, AbsurdDimensionsAreRefusedBeforeDecoding) {
  // Headers only: there is no pixel data, so only the header check can produce these messages.
  const fs::path large =
      write_bytes("large.png", kSignature + png_ihdr(20000, 20000, 8, 0) + png_chunk("IEND", ""));
  const std::string message = read_error(large, 1);
  EXPECT_NE(message.find("large.png"), std::string::npos) << message;
  EXPECT_NE(message.find("20000x20000"), std::string::npos) << message;
  EXPECT_NE(message.find("limit"), std::string::npos) << message;
  const fs::path huge =
      write_bytes("huge.png", kSignature + png_ihdr(100000, 100000, 8, 2) + png_chunk("IEND", ""));
  const std::string huge_message = read_error(huge);
  EXPECT_NE(huge_message.find("huge.png"), std::string::npos) << huge_message;
  EXPECT_NE(huge_message.find("100000x100000"), std::string::npos) << huge_message;
  // A JPEG header (SOF0 at 60000 x 60000), refused through stb's header reader.
  const Bytes jpeg = Bytes{char(0xFF), char(0xD8), char(0xFF), char(0xC0), 0, 11,   8, char(0xEA),
                           char(0x60), char(0xEA), char(0x60), 1,          1, 0x11, 0};
  const std::string jpeg_message = read_error(write_bytes("huge.jpg", jpeg));
  EXPECT_NE(jpeg_message.find("60000x60000"), std::string::npos) << jpeg_message;
}

TEST_F(ImageIo, A100MegapixelImageIsRefusedBeforeDecodingNamingTheLimit) {
  // The generator makes real PNGs: a 1-megapixel one decodes whole.
  const Image small = read_image(write_bytes("black_1mp.png", black_png(1000)), 1);
  ASSERT_EQ(small.pixels.size(), 1000u * 1000u);
  EXPECT_EQ(std::count(small.pixels.begin(), small.pixels.end(), 0), 1000 * 1000);
  const fs::path large = write_bytes("black_100mp.png", black_png(10000));
  EXPECT_LT(fs::file_size(large), 1u << 20);
  int width = 0, height = 0, channels = 0;
  ASSERT_TRUE(stbi_info(large.c_str(), &width, &height, &channels));
  EXPECT_EQ(width * height, 100'000'000);
  // 100 MP is more than kMaxImagePixels (8192 x 8192): refused from the header, unallocated.
  const std::string message = read_error(large, 3);
  EXPECT_CONTAINS(message, "black_100mp.png");
  EXPECT_CONTAINS(message, "10000x10000");
  EXPECT_CONTAINS(message, "limit of " + std::to_string(kMaxImagePixels) + " pixels");
  EXPECT_CONTAINS(message, "downscale it first");
  EXPECT_CONTAINS(message, "raise data.max_image_pixels, up to 268435456");
  // Raised as the message says, the same file decodes, every pixel black.
  const Image decoded = read_image(large, 1, 100'000'000);
  ASSERT_EQ(decoded.pixels.size(), 100'000'000u);
  EXPECT_EQ(std::count(decoded.pixels.begin(), decoded.pixels.end(), 0), 100'000'000);
  EXPECT_CONTAINS(testing::error_of([&] { read_image(large, 1, 99'999'999); }), "limit of 99999999");
  EXPECT_CONTAINS(testing::error_of([&] { read_image(large, 1, kMaxImagePixelsLimit + 1); }),
                  "max_pixels must be in [1, 268435456]");
  // A file longer than any image within the limit is refused unread (sparse: no disk used).
  const fs::path huge = write_bytes("huge.bmp", "BM");
  fs::resize_file(huge, kMaxImageFileBytes + 1);
  EXPECT_CONTAINS(read_error(huge), "kMaxImageFileBytes");
}

TEST_F(ImageIo, FormatsOutsidePngJpegBmpTgaGifAreRefused) {
  for (const Bytes& header : {Bytes("8BPS\x00\x01", 6), Bytes("P6\n2 2\n255\n"),
                              Bytes("#?RADIANCE\n"), Bytes("\x53\x80\xF6\x34", 4)}) {
    EXPECT_CONTAINS(read_error(write_bytes("other", header + Bytes(64, 'x'))), "convert it to PNG");
  }
}

// stb_image 2.27 builds a JPEG Huffman table from counts of more than 256 codes, writing past
// its arrays (stb_guard.h): such a file is refused before stb reads it, wherever the table is.
TEST_F(ImageIo, JpegHuffmanTablesOfMoreThan256CodesAreRefused) {
  const Bytes soi{char(0xFF), char(0xD8)};
  Bytes table = Bytes{char(0xFF), char(0xC4), 0x00, 0x13, 0x00} + Bytes(16, char(0xFF));
  const std::string message = read_error(write_bytes("dht.jpg", soi + table));
  EXPECT_CONTAINS(message, "dht.jpg");
  EXPECT_CONTAINS(message, "more than 256 codes");
  // After garbage and fill bytes, and after a scan's entropy-coded data (stuffed 0xFF 0x00).
  const Bytes scan = Bytes{char(0xFF), char(0xDA), 0x00, 0x02, 0x12, char(0xFF), 0x00, 0x34};
  EXPECT_CONTAINS(read_error(write_bytes("late.jpg", soi + "xyz" + scan + "\xff\xff" + table)),
                  "more than 256 codes");
  // The counts stb reads past the end of the file are zeros; what is there still counts.
  EXPECT_CONTAINS(read_error(write_bytes("cut.jpg", soi + table.substr(0, 8))),
                  "more than 256 codes");
}

// Exact area average: replicate each pixel k × k times (nearest upsampling), then average
// blocks of m × m, in float64.
std::vector<double> area_reference(const Image& image, int k, int m, int crop_y, int crop_x,
                                   int height, int width) {
  std::vector<double> out;
  for (int y = crop_y; y < crop_y + height; ++y)
    for (int x = crop_x; x < crop_x + width; ++x)
      for (int c = 0; c < image.channels; ++c) {
        double sum = 0;
        for (int sy = y * m; sy < (y + 1) * m; ++sy)
          for (int sx = x * m; sx < (x + 1) * m; ++sx)
            sum += image.pixels[((sy / k) * image.width + sx / k) * image.channels + c];
        out.push_back(sum / (m * m));
      }
  return out;
}

void expect_near_levels(const Image& image, const std::vector<double>& reference) {
  ASSERT_EQ(image.pixels.size(), reference.size());
  for (size_t i = 0; i < reference.size(); ++i) {
    EXPECT_LE(std::abs(image.pixels[i] - reference[i]), 0.5 + 1e-3) << "sample " << i;
  }
}

TEST_F(ImageIo, ResizeAveragesAreasAndCropsTheCentre) {
  const Image image = pattern(8, 6, 3);
  const Image same = resize_and_crop(image, 8, 6);
  EXPECT_EQ(same.pixels, image.pixels);
  // 2x: exactly the 2x2 block means, rounded (within half a level).
  expect_near_levels(resize_and_crop(image, 4, 3), area_reference(image, 1, 2, 0, 0, 4, 3));
  // 1.5x (9x6 -> 6x4): 3x3 blocks of the 2x replicated image.
  const Image odd = pattern(9, 6, 1, 4);
  expect_near_levels(resize_and_crop(odd, 6, 4), area_reference(odd, 2, 3, 0, 0, 6, 4));
  // 4x8 -> 2x2: scale 0.5 gives 2x4, whose centre columns 1 and 2 are kept.
  const Image wide = pattern(4, 8, 1, 5);
  expect_near_levels(resize_and_crop(wide, 2, 2), area_reference(wide, 1, 2, 0, 1, 2, 2));
}

TEST_F(ImageIo, ResizeEnlargesBilinearly) {
  const Image small = pattern(3, 4, 3, 6);
  const Image large = resize_and_crop(small, 6, 8);
  const torch::Tensor reference =
      torch::nn::functional::interpolate(
          image_to_tensor(small).to(torch::kDouble).add(1).mul(127.5).unsqueeze(0),
          torch::nn::functional::InterpolateFuncOptions()
              .size(std::vector<int64_t>{6, 8})
              .mode(torch::kBilinear)
              .align_corners(false))
          .squeeze(0)
          .permute({1, 2, 0})
          .contiguous();
  const std::vector<double> expected(reference.data_ptr<double>(),
                                     reference.data_ptr<double>() + reference.numel());
  expect_near_levels(large, expected);
}

TEST_F(ImageIo, TensorsMapToMinusOneOne) {
  const Image image = pattern(3, 5, 3);
  const torch::Tensor chw = image_to_tensor(image);
  ASSERT_EQ(chw.sizes(), torch::IntArrayRef({3, 3, 5}));
  ASSERT_EQ(chw.scalar_type(), torch::kFloat);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 5; ++x)
        ASSERT_FLOAT_EQ(chw[c][y][x].item<float>(),
                        image.pixels[(y * 5 + x) * 3 + c] / 127.5f - 1.0f);
  EXPECT_EQ(tensor_to_image(chw).pixels, image.pixels);
  EXPECT_EQ(tensor_to_image(chw.to(torch::kDouble)).pixels, image.pixels);
  const Image clamped =
      tensor_to_image(torch::tensor({-3.0, -1.0, 0.0, 0.999, 7.0}).view({1, 1, 5}));
  EXPECT_EQ(clamped.pixels, (std::vector<uint8_t>{0, 0, 128, 255, 255}));
  EXPECT_THROW(tensor_to_image(torch::zeros({2, 4, 4})), Error);
}

TEST_F(ImageIo, GridTilesImagesWithPadding) {
  const torch::Tensor batch = torch::rand({5, 3, 2, 3}).mul(2).sub(1);
  const Image grid = make_grid(batch, 2, 1);
  ASSERT_EQ(grid.height, 3 * 2 + 2);
  ASSERT_EQ(grid.width, 2 * 3 + 1);
  for (int n = 0; n < 6; ++n) {
    const Image tile = n < 5 ? tensor_to_image(batch[n]) : Image{2, 3, 3, std::vector<uint8_t>(18)};
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < 3; ++c)
          EXPECT_EQ(grid.pixels[(((n / 2) * 3 + y) * 7 + (n % 2) * 4 + x) * 3 + c],
                    tile.pixels[(y * 3 + x) * 3 + c]);
  }
  for (int y = 0; y < grid.height; ++y)  // the padding column
    for (int c = 0; c < 3; ++c) EXPECT_EQ(grid.pixels[(y * 7 + 3) * 3 + c], 0);
  EXPECT_EQ(make_grid(batch, 10, 2).width, 5 * 3 + 4 * 2);
}

TEST_F(ImageIo, PngTextChunksRoundTrip) {
  const Image image = pattern(6, 5, 3);
  const std::vector<std::pair<std::string, std::string>> text = {
      {"ddpm.step", "12000"}, {"config", "{\"data\": {\"channels\": 3}}\nsecond line"}};
  const fs::path path = folder_ / "sample.png";
  write_png(path, image, text);
  const auto found = read_png_text(path);
  EXPECT_EQ(found, (std::map<std::string, std::string>(text.begin(), text.end())));
  EXPECT_EQ(read_image(path, 3).pixels, image.pixels);
  // The chunks sit right after IHDR and carry valid CRCs.
  std::ifstream in(path, std::ios::binary);
  const Bytes png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const Bytes first = png.substr(33, 4 + 4 + 10 + 5 + 4);
  EXPECT_EQ(first.substr(4, 4), "tEXt");
  EXPECT_EQ(first, png_chunk("tEXt", Bytes("ddpm.step\0"
                                           "12000",
                                           15)));
  write_png(folder_ / "plain.png", image);
  EXPECT_TRUE(read_png_text(folder_ / "plain.png").empty());
  ASSERT_TRUE(stbi_write_jpg((folder_ / "photo.jpg").c_str(), 5, 6, 3, image.pixels.data(), 90));
  EXPECT_THROW(read_png_text(folder_ / "photo.jpg"), Error);
  EXPECT_THROW(write_png(folder_ / "bad.png", image, {{"", "no key"}}), Error);
}

}  // namespace
}  // namespace ddpm
