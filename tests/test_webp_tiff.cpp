// WebP and TIFF decoding (formats/webp_image.h, tiff_image.h) through decode_image: files written
// here by libwebp's and libtiff's own encoders from known pixels, decoded and compared exactly
// (lossless WebP, every TIFF layout) or within a stated error (lossy WebP, alpha that libtiff
// premultiplies); animations and multi-page files give their first frame; truncated, corrupt,
// oversized and unsupported files are refused naming the file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ddpm/error.h"
#include "formats/image_io.h"
#include "image_codecs.h"
#include "test_support.h"

#if DDPM_WITH_WEBP && DDPM_WITH_TIFF
#include <tiffio.h>
#include <webp/encode.h>
#include <webp/mux.h>
#endif

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Pixels every test knows independently of any decoder.
std::vector<uint8_t> known_pixels(int height, int width, int channels, int salt = 0) {
  std::vector<uint8_t> pixels;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        pixels.push_back(static_cast<uint8_t>((y * 37 + x * 11 + c * 89 + salt * 13 + 3) % 256));
      }
    }
  }
  return pixels;
}

std::string expect_refused(const std::string& bytes, const std::string& name,
                           int64_t max_pixels = kMaxImagePixels) {
  try {
    decode_image(bytes, 3, name, max_pixels);
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << name << " was decoded, not refused";
  return "";
}

#if DDPM_WITH_WEBP && DDPM_WITH_TIFF

std::string webp_lossless(const std::vector<uint8_t>& pixels, int height, int width,
                          bool alpha) {
  uint8_t* output = nullptr;
  const size_t size =
      alpha ? WebPEncodeLosslessRGBA(pixels.data(), width, height, width * 4, &output)
            : WebPEncodeLosslessRGB(pixels.data(), width, height, width * 3, &output);
  std::string bytes(reinterpret_cast<const char*>(output), size);
  WebPFree(output);
  return bytes;
}

TEST(WebpImage, LosslessRgbAndRgbaDecodeExactlyInEveryChannelCount) {
  const int height = 23, width = 37;
  const std::vector<uint8_t> rgb = known_pixels(height, width, 3);
  const Image image = decode_image(webp_lossless(rgb, height, width, false), 3, "rgb.webp");
  EXPECT_EQ(image.height, height);
  EXPECT_EQ(image.width, width);
  EXPECT_EQ(image.source_channels, 3);
  EXPECT_EQ(image.frames, 1);
  EXPECT_EQ(image.pixels, rgb);

  std::vector<uint8_t> rgba = known_pixels(height, width, 4, 1);
  for (size_t i = 3; i < rgba.size(); i += 4) rgba[i] = static_cast<uint8_t>(1 + rgba[i] % 255);
  const std::string bytes = webp_lossless(rgba, height, width, true);
  const Image four = decode_image(bytes, 4, "rgba.webp");
  EXPECT_EQ(four.source_channels, 4);
  EXPECT_EQ(four.pixels, rgba);
  // One channel: BT.601 luma of the known pixels, rounded, computed here in integers.
  const Image gray = decode_image(bytes, 1, "rgba.webp");
  ASSERT_EQ(gray.pixels.size(), size_t(height) * width);
  for (size_t i = 0; i < gray.pixels.size(); ++i) {
    const int luma = (299 * rgba[4 * i] + 587 * rgba[4 * i + 1] + 114 * rgba[4 * i + 2] + 500) /
                     1000;
    ASSERT_EQ(gray.pixels[i], luma) << "pixel " << i;
  }
}

// Lossy WebP at quality 90 on a smooth image: every pixel within 12 levels, mean error under 2.
TEST(WebpImage, LossyDecodesCloseToTheEncodedPixels) {
  const int height = 32, width = 48;
  std::vector<uint8_t> rgb;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      rgb.insert(rgb.end(), {static_cast<uint8_t>(x * 5), static_cast<uint8_t>(y * 7), 128});
    }
  }
  uint8_t* output = nullptr;
  const size_t size = WebPEncodeRGB(rgb.data(), width, height, width * 3, 90, &output);
  const std::string bytes(reinterpret_cast<const char*>(output), size);
  WebPFree(output);
  const Image image = decode_image(bytes, 3, "lossy.webp");
  ASSERT_EQ(image.pixels.size(), rgb.size());
  double total = 0;
  for (size_t i = 0; i < rgb.size(); ++i) {
    const int error = std::abs(int(image.pixels[i]) - int(rgb[i]));
    ASSERT_LE(error, 12) << "sample " << i;
    total += error;
  }
  EXPECT_LT(total / rgb.size(), 2.0);
}

// An animation: the first frame, composed on the canvas, and the frame count.
TEST(WebpImage, AnAnimationGivesItsFirstFrame) {
  const int height = 9, width = 13;
  WebPAnimEncoderOptions options;
  ASSERT_TRUE(WebPAnimEncoderOptionsInit(&options));
  WebPAnimEncoder* encoder = WebPAnimEncoderNew(width, height, &options);
  ASSERT_NE(encoder, nullptr);
  WebPConfig config;
  ASSERT_TRUE(WebPConfigInit(&config));
  config.lossless = 1;
  std::vector<uint8_t> first;
  for (int frame = 0; frame < 3; ++frame) {
    std::vector<uint8_t> rgba = known_pixels(height, width, 4, frame);
    for (size_t i = 3; i < rgba.size(); i += 4) rgba[i] = 255;
    if (frame == 0) first = rgba;
    WebPPicture picture;
    ASSERT_TRUE(WebPPictureInit(&picture));
    picture.use_argb = 1;
    picture.width = width;
    picture.height = height;
    ASSERT_TRUE(WebPPictureImportRGBA(&picture, rgba.data(), width * 4));
    ASSERT_TRUE(WebPAnimEncoderAdd(encoder, &picture, frame * 100, &config));
    WebPPictureFree(&picture);
  }
  ASSERT_TRUE(WebPAnimEncoderAdd(encoder, nullptr, 300, nullptr));
  WebPData data;
  WebPDataInit(&data);
  ASSERT_TRUE(WebPAnimEncoderAssemble(encoder, &data));
  const std::string bytes(reinterpret_cast<const char*>(data.bytes), data.size);
  WebPDataClear(&data);
  WebPAnimEncoderDelete(encoder);

  const Image image = decode_image(bytes, 4, "animation.webp");
  EXPECT_EQ(image.frames, 3);
  EXPECT_EQ(image.height, height);
  EXPECT_EQ(image.width, width);
  EXPECT_EQ(image.pixels, first);
}

TEST(WebpImage, TruncatedCorruptAndOversizedFilesAreRefusedNamingTheFile) {
  const std::string bytes = webp_lossless(known_pixels(40, 50, 3), 40, 50, false);
  EXPECT_NE(expect_refused(bytes.substr(0, bytes.size() / 2), "half.webp").find("WebP"),
            std::string::npos);
  std::string corrupt = bytes;
  for (size_t i = 40; i < corrupt.size(); i += 3) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  expect_refused(corrupt, "corrupt.webp");
  EXPECT_NE(expect_refused(bytes.substr(0, 12), "header.webp").find("WebP"), std::string::npos);
  // 50 x 40 = 2000 pixels against a limit of 1999: refused before decoding, naming the size.
  EXPECT_NE(expect_refused(bytes, "big.webp", 1999).find("50x40"), std::string::npos);
  EXPECT_NO_THROW(decode_image(bytes, 3, "fits.webp", 2000));
}

// A TIFF written by libtiff with the given layout; `samples` holds height rows of width *
// samples_per_pixel values of bits_per_sample bits (8 or 16, native endianness).
struct TiffPage {
  TiffPage(int height, int width, int samples_per_pixel, int bits,
           uint16_t photometric = PHOTOMETRIC_MINISBLACK, uint16_t compression = COMPRESSION_NONE,
           uint16_t extra_sample = 0)
      : height(height), width(width), samples_per_pixel(samples_per_pixel), bits(bits),
        photometric(photometric), compression(compression), extra_sample(extra_sample) {}
  int height = 0, width = 0, samples_per_pixel = 1, bits = 8;
  uint16_t photometric = PHOTOMETRIC_MINISBLACK;
  uint16_t compression = COMPRESSION_NONE;
  uint16_t extra_sample = 0;  // EXTRASAMPLE_* of a last alpha sample, 0 for none
  int sample_format = SAMPLEFORMAT_UINT;
  std::vector<uint16_t> colormap;  // 3 * 256 entries for a palette image
  std::string samples;
};

std::string write_tiff(const fs::path& path, const std::vector<TiffPage>& pages) {
  TIFF* tiff = TIFFOpen(path.c_str(), "w");
  EXPECT_NE(tiff, nullptr);
  for (const TiffPage& page : pages) {
    TIFFSetField(tiff, TIFFTAG_IMAGEWIDTH, page.width);
    TIFFSetField(tiff, TIFFTAG_IMAGELENGTH, page.height);
    TIFFSetField(tiff, TIFFTAG_SAMPLESPERPIXEL, page.samples_per_pixel);
    TIFFSetField(tiff, TIFFTAG_BITSPERSAMPLE, page.bits);
    TIFFSetField(tiff, TIFFTAG_SAMPLEFORMAT, page.sample_format);
    TIFFSetField(tiff, TIFFTAG_PHOTOMETRIC, page.photometric);
    TIFFSetField(tiff, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tiff, TIFFTAG_COMPRESSION, page.compression);
    TIFFSetField(tiff, TIFFTAG_ROWSPERSTRIP, 4);
    if (page.extra_sample) {
      const uint16_t extra[] = {page.extra_sample};
      TIFFSetField(tiff, TIFFTAG_EXTRASAMPLES, 1, extra);
    }
    if (!page.colormap.empty()) {
      TIFFSetField(tiff, TIFFTAG_COLORMAP, page.colormap.data(), page.colormap.data() + 256,
                   page.colormap.data() + 512);
    }
    const size_t row = page.samples.size() / page.height;
    for (int y = 0; y < page.height; ++y) {
      std::string line = page.samples.substr(y * row, row);
      EXPECT_EQ(TIFFWriteScanline(tiff, line.data(), y, 0), 1);
    }
    EXPECT_TRUE(TIFFWriteDirectory(tiff));
  }
  TIFFClose(tiff);
  return read_all(path);
}

std::string as_bytes(const std::vector<uint8_t>& values) {
  return std::string(values.begin(), values.end());
}

class TiffImage : public ::testing::Test {
 protected:
  TempDir dir_{"tiff_image"};
  fs::path file(const std::string& name) const { return dir_.path() / name; }
};

TEST_F(TiffImage, EightBitGrayRgbAndCompressedPagesDecodeExactly) {
  const int height = 11, width = 17;
  const std::vector<uint8_t> gray = known_pixels(height, width, 1);
  const std::vector<uint8_t> rgb = known_pixels(height, width, 3, 2);
  for (uint16_t compression : {COMPRESSION_NONE, COMPRESSION_LZW, COMPRESSION_ADOBE_DEFLATE,
                               COMPRESSION_PACKBITS}) {
    SCOPED_TRACE(compression);
    TiffPage page{height, width, 1, 8, PHOTOMETRIC_MINISBLACK, compression};
    page.samples = as_bytes(gray);
    const Image one = decode_image(write_tiff(file("gray.tif"), {page}), 1, "gray.tif");
    EXPECT_EQ(one.source_channels, 1);
    EXPECT_EQ(one.frames, 1);
    EXPECT_EQ(one.pixels, gray);
    page.samples_per_pixel = 3;
    page.photometric = PHOTOMETRIC_RGB;
    page.samples = as_bytes(rgb);
    const Image three = decode_image(write_tiff(file("rgb.tif"), {page}), 3, "rgb.tif");
    EXPECT_EQ(three.source_channels, 3);
    EXPECT_EQ(three.pixels, rgb);
  }
  // Min-is-white: 0 is white.
  TiffPage white{height, width, 1, 8, PHOTOMETRIC_MINISWHITE};
  white.samples = as_bytes(gray);
  const Image inverted = decode_image(write_tiff(file("white.tif"), {white}), 1, "white.tif");
  for (size_t i = 0; i < gray.size(); ++i) ASSERT_EQ(inverted.pixels[i], 255 - gray[i]);
}

// 16-bit samples become 8-bit as libtiff's RGBA reader makes them, keeping the high byte
// (v >> 8), within one level of the PNG path's rounding of v * 255 / 65535.
TEST_F(TiffImage, SixteenBitSamplesAreRounded) {
  const int height = 4, width = 64;
  std::vector<uint16_t> wide;
  for (int i = 0; i < height * width; ++i) wide.push_back(static_cast<uint16_t>(i * 257 + i % 200));
  TiffPage page{height, width, 1, 16};
  page.samples.assign(reinterpret_cast<const char*>(wide.data()), wide.size() * 2);
  const Image image = decode_image(write_tiff(file("gray16.tif"), {page}), 1, "gray16.tif");
  ASSERT_EQ(image.pixels.size(), wide.size());
  for (size_t i = 0; i < wide.size(); ++i) {
    ASSERT_EQ(image.pixels[i], wide[i] >> 8) << "sample " << i;
    ASSERT_LE(std::abs(image.pixels[i] - int((wide[i] * 255.0) / 65535.0 + 0.5)), 1);
  }
}

// Alpha comes back straight (unassociated), as the other decoders give it: exact where alpha
// is 255, within 255 / (2 alpha) + 1 levels elsewhere (libtiff premultiplies on the way).
TEST_F(TiffImage, AlphaComesBackUnpremultipliedAndPalettesAsRgb) {
  const int height = 8, width = 16;
  std::vector<uint8_t> rgba = known_pixels(height, width, 4, 3);
  for (size_t i = 3; i < rgba.size(); i += 4) rgba[i] = (i / 4) % 2 ? 255 : 64 + (i / 4) % 190;
  TiffPage page{height, width, 4, 8, PHOTOMETRIC_RGB, COMPRESSION_NONE, EXTRASAMPLE_UNASSALPHA};
  page.samples = as_bytes(rgba);
  const Image image = decode_image(write_tiff(file("rgba.tif"), {page}), 4, "rgba.tif");
  EXPECT_EQ(image.source_channels, 4);
  ASSERT_EQ(image.pixels.size(), rgba.size());
  for (size_t i = 0; i < rgba.size(); ++i) {
    const int alpha = rgba[i / 4 * 4 + 3];
    const int tolerance = i % 4 == 3 || alpha == 255 ? 0 : 255 / (2 * alpha) + 1;
    ASSERT_LE(std::abs(int(image.pixels[i]) - int(rgba[i])), tolerance) << "sample " << i;
  }
  std::vector<uint8_t> gray_alpha = known_pixels(height, width, 2, 4);
  for (size_t i = 1; i < gray_alpha.size(); i += 2) gray_alpha[i] = 255;
  TiffPage two{height, width, 2, 8, PHOTOMETRIC_MINISBLACK, COMPRESSION_NONE,
               EXTRASAMPLE_UNASSALPHA};
  two.samples = as_bytes(gray_alpha);
  const Image ga = decode_image(write_tiff(file("ga.tif"), {two}), 4, "ga.tif");
  EXPECT_EQ(ga.source_channels, 2);
  for (size_t i = 0; i < size_t(height) * width; ++i) {
    const uint8_t expected[] = {gray_alpha[2 * i], gray_alpha[2 * i], gray_alpha[2 * i], 255};
    ASSERT_EQ(std::vector<uint8_t>(ga.pixels.begin() + 4 * i, ga.pixels.begin() + 4 * i + 4),
              std::vector<uint8_t>(expected, expected + 4));
  }
  // A palette of 16-bit colours: index i maps to (i, 255 - i, i / 2) in 8 bits.
  TiffPage palette{height, width, 1, 8, PHOTOMETRIC_PALETTE};
  palette.colormap.resize(768);
  for (int i = 0; i < 256; ++i) {
    palette.colormap[i] = static_cast<uint16_t>(i * 257);
    palette.colormap[256 + i] = static_cast<uint16_t>((255 - i) * 257);
    palette.colormap[512 + i] = static_cast<uint16_t>(i / 2 * 257);
  }
  const std::vector<uint8_t> indices = known_pixels(height, width, 1, 5);
  palette.samples = as_bytes(indices);
  const Image colours = decode_image(write_tiff(file("palette.tif"), {palette}), 3, "p.tif");
  EXPECT_EQ(colours.source_channels, 3);
  for (size_t i = 0; i < indices.size(); ++i) {
    ASSERT_EQ(colours.pixels[3 * i], indices[i]);
    ASSERT_EQ(colours.pixels[3 * i + 1], 255 - indices[i]);
    ASSERT_EQ(colours.pixels[3 * i + 2], indices[i] / 2);
  }
}

TEST_F(TiffImage, AMultiPageFileGivesItsFirstPage) {
  const int height = 5, width = 7;
  std::vector<TiffPage> pages;
  for (int salt = 0; salt < 3; ++salt) {
    TiffPage page{height, width, 1, 8};
    page.samples = as_bytes(known_pixels(height, width, 1, salt));
    pages.push_back(page);
  }
  const Image image = decode_image(write_tiff(file("pages.tif"), pages), 1, "pages.tif");
  EXPECT_EQ(image.frames, 3);
  EXPECT_EQ(image.pixels, known_pixels(height, width, 1, 0));
}

// Through a command: `ddpm eval` on a folder of two-page TIFFs against a folder of the same
// first pages as lossless WebP (WebP has no gray mode: R = G = B, whose luma is the gray value
// exactly, hence --allow-size-mismatch) scores FID 0 (the same pixels), and says the multi-page note
// once for the whole run, not once per file.
TEST_F(TiffImage, EvalReadsTiffAndWebpFoldersAndSaysTheMultiPageNoteOnce) {
  const fs::path tiffs = file("tiffs"), webps = file("webps"), net = file("net.pt");
  fs::create_directories(tiffs);
  fs::create_directories(webps);
  for (int i = 0; i < 4; ++i) {
    TiffPage first{8, 8, 1, 8}, second{8, 8, 1, 8};
    const std::vector<uint8_t> gray = known_pixels(8, 8, 1, i);
    first.samples = as_bytes(gray);
    second.samples = as_bytes(known_pixels(8, 8, 1, i + 7));
    write_tiff(tiffs / (std::to_string(i) + ".tif"), {first, second});
    std::vector<uint8_t> rgb;
    for (uint8_t value : gray) rgb.insert(rgb.end(), {value, value, value});
    std::ofstream(webps / (std::to_string(i) + ".webp"), std::ios::binary)
        << webp_lossless(rgb, 8, 8, false);
  }
  testing::write_feature_net(net, testing::kBlockMeansForward);
  const auto result = testing::run_ddpm("eval --real " + tiffs.string() + " --generated " +
                                        webps.string() + " --features " + net.string() +
                                        " --metrics fid --threads 1 --allow-size-mismatch");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("(tif 4)"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("(webp 4)"), std::string::npos) << result.output;
  size_t notes = 0;
  for (size_t at = result.output.find("holds 2 pages"); at != std::string::npos;
       at = result.output.find("holds 2 pages", at + 1)) {
    ++notes;
  }
  EXPECT_EQ(notes, 1u) << result.output;
  const size_t fid = result.output.find("\nfid ");
  ASSERT_NE(fid, std::string::npos) << result.output;
  EXPECT_NEAR(std::stod(result.output.substr(result.output.find_first_not_of(' ', fid + 5))),
              0.0, 1e-6);
}

TEST_F(TiffImage, BadFilesAreRefusedNamingTheFileAndWhatToDo) {
  TiffPage page{20, 30, 3, 8, PHOTOMETRIC_RGB};
  page.samples = as_bytes(known_pixels(20, 30, 3));
  const std::string bytes = write_tiff(file("rgb.tif"), {page});
  // Pixel data cut off, then the directory itself cut off (libtiff writes it at the end).
  expect_refused(bytes.substr(0, 8 + 600), "cut.tif");
  expect_refused(bytes.substr(0, 8), "header.tif");
  std::string garbage("II*\0", 4);
  garbage.append(200, '\xff');
  expect_refused(garbage, "garbage.tif");
  EXPECT_NE(expect_refused(bytes, "big.tif", 599).find("30x20"), std::string::npos);
  EXPECT_NO_THROW(decode_image(bytes, 3, "fits.tif", 600));
  // Floating-point samples: refused, saying to convert the file.
  TiffPage floats{4, 4, 1, 32};
  floats.sample_format = SAMPLEFORMAT_IEEEFP;
  floats.samples.assign(4 * 4 * 4, '\0');
  const std::string message = expect_refused(write_tiff(file("f.tif"), {floats}), "float.tif");
  EXPECT_NE(message.find("convert"), std::string::npos) << message;
}

#else  // built without libwebp or libtiff (a carried-dependency build)

TEST(WebpTiff, ABuildWithoutTheLibrariesRefusesThemSayingWhatToInstall) {
  EXPECT_NE(expect_refused(std::string("RIFF\x10\0\0\0WEBPVP8L", 16), "a.webp").find("libwebp-dev"),
            std::string::npos);
  EXPECT_NE(expect_refused(std::string("II*\0\x08\0\0\0", 8), "a.tif").find("libtiff-dev"),
            std::string::npos);
}

#endif

}  // namespace
}  // namespace ddpm
