// Editing from the command line and the C++ API, on the shipped Fashion-MNIST model: inpainting
// keeps the known pixels, image-to-image runs the part of the chain its strength says, inversion
// reconstructs, interpolation writes its frames; every bad input is refused before anything is
// written; the API gives the CLI's pixels.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "ddpm/ddpm.h"
#include "formats/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::run_ddpm;

const std::string kModel = std::string(DDPM_SOURCE_DIR) + "/data/models/fashion_mnist_cpu.pt";

// A 28 x 28 gray image with a shoe-like bright blob, and masks that keep one side of it.
Image test_image(int height = 28, int width = 28) {
  Image image{height, width, 1, std::vector<uint8_t>(height * width)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double d = std::hypot((x - width * 0.45) / 9.0, (y - height * 0.6) / 5.0);
      image.pixels[y * width + x] = static_cast<uint8_t>(d < 1.0 ? 200 - 60 * d : 10);
    }
  }
  return image;
}

Image half_mask(int height = 28, int width = 28) {
  Image mask{height, width, 1, std::vector<uint8_t>(height * width)};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) mask.pixels[y * width + x] = x < width / 2 ? 255 : 0;
  }
  return mask;
}

class EditingCli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_png(path("shoe.png"), test_image(), {});
    write_png(path("left.png"), half_mask(), {});
  }
  fs::path path(const std::string& name) const { return temp_.path() / name; }
  std::string base() const {
    return "sample --checkpoint " + kModel + " --threads 2 --seed 3 --init " +
           path("shoe.png").string() + " ";
  }
  testing::TempDir temp_{"editing_cli"};
};

TEST_F(EditingCli, InpaintingKeepsTheKnownPixelsAndRecordsItsInputs) {
  const auto run = run_ddpm(base() + "--mask " + path("left.png").string() +
                            " --sampler ddpm --steps 10 --set sample.jump_length=3 "
                            "--set sample.jump_n_sample=2 --out " + path("inpainted").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_CONTAINS(run.output, "inpainting (RePaint, jump_length 3, jump_n_sample 2)");
  const Image out = read_image(path("inpainted") / "sample_00000.png", 1);
  const Image in = test_image();
  int changed = 0;
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) {
      if (x < 14) {
        ASSERT_EQ(out.pixels[y * 28 + x], in.pixels[y * 28 + x]) << x << "," << y;
      } else {
        changed += out.pixels[y * 28 + x] != in.pixels[y * 28 + x];
      }
    }
  }
  EXPECT_GT(changed, 50);  // the right half is generated
  const auto text = read_png_text(path("inpainted") / "sample_00000.png");
  EXPECT_EQ(text.at("mode"), "inpaint");
  EXPECT_EQ(text.at("init"), path("shoe.png").string());
  EXPECT_EQ(text.at("mask"), path("left.png").string());
  // 10 steps down, and a jump of 3 back up at indices 0, 3 and 6 (below 10 - 3): 19 evaluations
  // (diffusers' RePaintScheduler list for T 1000, 10 steps, j 3, r 2 has 28 entries, 19 down).
  EXPECT_EQ(text.at("nfe"), "19");
  EXPECT_EQ(text.at("jump_n_sample"), "2");
}

TEST_F(EditingCli, ImageToImageRunsItsStrengthsShareOfTheChain) {
  const auto light = run_ddpm(base() + "--strength 0.3 --sampler dpmpp_2m --steps 20 --out " +
                              path("light").string());
  ASSERT_EQ(light.exit_code, 0) << light.output;
  const auto text = read_png_text(path("light") / "sample_00000.png");
  EXPECT_EQ(text.at("nfe"), "6");  // floor(0.3 x 20)
  EXPECT_EQ(text.at("mode"), "image-to-image");
  EXPECT_EQ(text.at("strength"), "0.3");
  const auto strong = run_ddpm(base() + "--strength 1 --sampler dpmpp_2m --steps 20 --out " +
                               path("strong").string());
  ASSERT_EQ(strong.exit_code, 0) << strong.output;
  const Image in = test_image();
  const auto distance = [&](const fs::path& file) {
    const Image out = read_image(file, 1);
    double sum = 0;
    for (size_t i = 0; i < in.pixels.size(); ++i) sum += std::abs(out.pixels[i] - in.pixels[i]);
    return sum / in.pixels.size();
  };
  EXPECT_LT(distance(path("light") / "sample_00000.png"),
            0.5 * distance(path("strong") / "sample_00000.png"));
  // --num repeats a single input with each image's own noise.
  const auto three = run_ddpm(base() + "--strength 0.6 --sampler ddim --steps 10 --num 3 --out " +
                              path("three").string());
  ASSERT_EQ(three.exit_code, 0) << three.output;
  EXPECT_NE(read_image(path("three") / "sample_00000.png", 1).pixels,
            read_image(path("three") / "sample_00002.png", 1).pixels);
}

TEST_F(EditingCli, BadInputsAreRefusedBeforeAnythingIsWritten) {
  write_png(path("small_mask.png"), half_mask(20, 20), {});
  fs::create_directories(path("masks"));
  write_png(path("masks/other.png"), half_mask(), {});
  const std::string model = "sample --checkpoint " + kModel + " --out " + path("none").string();
  for (const auto& [flags, expected] : std::vector<std::pair<std::string, std::string>>{
           {" --mask " + path("left.png").string(), "--mask needs --init"},
           {" --strength 0.5", "--strength needs --init"},
           {" --init " + path("shoe.png").string(), "either --mask"},
           {" --init " + path("shoe.png").string() + " --strength 1.5", "--strength must be in"},
           {" --init " + path("shoe.png").string() + " --strength 0.01 --steps 10",
            "runs no step"},
           {" --init " + path("shoe.png").string() + " --mask " + path("small_mask.png").string(),
            "is 20x20 but its image"},
           {" --init " + path("shoe.png").string() + " --mask " + path("masks").string(),
            "has no mask for"},
           {" --init " + path("shoe.png").string() + " --mask " + path("left.png").string() +
                " --sampler euler",
            "sample.sampler"},
           {" --init " + path("missing.png").string() + " --strength 0.5", "does not exist"}}) {
    const auto run = run_ddpm(model + flags);
    EXPECT_EQ(run.exit_code, 2) << flags << "\n" << run.output;
    EXPECT_CONTAINS(run.output, expected);
    EXPECT_FALSE(fs::exists(path("none"))) << flags;
  }
}

// Inversion reconstructs an image of the model's own distribution (one of its samples; an image
// unlike the data, as test_image(), comes back far less well: 10.8 dB measured).
TEST_F(EditingCli, InversionReconstructsAndInterpolationWritesItsFrames) {
  const auto sampled = run_ddpm("sample --checkpoint " + kModel + " --threads 2 --num 1 --seed 4 "
                                "--out " + path("sampled").string());
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  const auto inverted = run_ddpm("invert --checkpoint " + kModel + " --threads 2 --images " +
                                 (path("sampled") / "sample_00000.png").string() +
                                 " --steps 50 --out " + path("x_T.pt").string());
  ASSERT_EQ(inverted.exit_code, 0) << inverted.output;
  const auto back = run_ddpm("sample --checkpoint " + kModel + " --threads 2 --noise " +
                             path("x_T.pt").string() + " --sampler ddim --steps 50 --num 1 "
                             "--out " + path("back").string());
  ASSERT_EQ(back.exit_code, 0) << back.output;
  const Image in = read_image(path("sampled") / "sample_00000.png", 1);
  const Image out = read_image(path("back") / "sample_00000.png", 1);
  double squared = 0;
  for (size_t i = 0; i < in.pixels.size(); ++i) {
    squared += std::pow(double(out.pixels[i]) - in.pixels[i], 2);
  }
  const double psnr = 10 * std::log10(255.0 * 255.0 / (squared / in.pixels.size()));
  std::printf("inversion round trip at 50 DDIM steps: PSNR %.1f dB\n", psnr);
  EXPECT_GT(psnr, 20.0);

  const auto frames = run_ddpm("interpolate --checkpoint " + kModel + " --threads 2 --from " +
                               path("x_T.pt").string() + ":0 --to " + path("shoe.png").string() +
                               " --frames 3 --steps 10 --out " + path("frames").string() +
                               " --grid " + path("strip.png").string());
  ASSERT_EQ(frames.exit_code, 0) << frames.output;
  EXPECT_EQ(read_png_text(path("frames") / "frame_001.png").at("fraction"), "0.5");
  EXPECT_TRUE(fs::exists(path("frames") / "frame_002.png"));
  EXPECT_EQ(read_image(path("strip.png"), 1).width, 3 * 28 + 2 * 2);
  // Its first frame is the decoding of row 0 of the noise file, as ddpm sample --noise makes it.
  const auto first = run_ddpm("sample --checkpoint " + kModel + " --threads 2 --noise " +
                              path("x_T.pt").string() + " --sampler ddim --steps 10 --num 1 "
                              "--out " + path("first").string());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(read_image(path("frames") / "frame_000.png", 1).pixels,
            read_image(path("first") / "sample_00000.png", 1).pixels);
  const auto missing = run_ddpm("interpolate --checkpoint " + kModel + " --from " +
                                path("nothing.pt").string() + ":1 --to " +
                                path("shoe.png").string() + " --out " + path("none").string());
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_CONTAINS(missing.output, "does not exist");
  EXPECT_FALSE(fs::exists(path("none")));
}

// The API's editing calls give the CLI's pixels.
TEST_F(EditingCli, ThePublicApiGivesTheClisImages) {
  const auto run = run_ddpm(base() + "--mask " + path("left.png").string() +
                            " --sampler ddim --steps 8 --set sample.jump_n_sample=2 --out " +
                            path("cli").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const Pipeline pipeline = Pipeline::load(kModel, "cpu");
  EditInputs inputs = pipeline.read_inputs({path("shoe.png").string()}, {path("left.png").string()});
  SampleRequest request;
  request.seed = 3;
  request.sampler = "ddim";
  request.steps = 8;
  request.overrides = {"sample.jump_n_sample=2"};
  request.init_images = inputs.images;
  request.masks = inputs.masks;
  const std::vector<GeneratedImage> images = pipeline.generate(request);
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0].pixels, read_image(path("cli") / "sample_00000.png", 1).pixels);
  EXPECT_EQ(pipeline.plan(request).mode, "inpaint");
  request.masks.clear();
  EXPECT_CONTAINS(testing::error_of([&] { pipeline.plan(request); }), "needs masks");
}

}  // namespace
}  // namespace ddpm
