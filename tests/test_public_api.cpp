// The C++ API (ddpm.h) against the CLI it shares its code with: the same pixels as `ddpm sample`,
// the same weights as `ddpm train`, the same error messages; cancelling; the header compiling
// on its own; and libddpm exporting the API and nothing else.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "ddpm/ddpm_tensor.h"
#include "formats/checkpoint.h"
#include "formats/image_io.h"
#include "formats/image_tensor.h"
#include "test_support.h"

namespace ddpm {
namespace {

using testing::TempDir;

// A run trained for 3 steps by `ddpm train`, at this process's thread count.
class PublicApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new TempDir("public_api");
    testing::write_image_folder(temp_->path() / "images", 16, 8, 8);
    std::ofstream(temp_->path() / "config.json")
        << testing::small_train_config(temp_->path() / "images", 3);
    const auto result = testing::run_ddpm("train --config " + config().string() + " --out " +
                                          (temp_->path() / "cli_run").string() + threads());
    ASSERT_EQ(result.exit_code, 0) << result.output;
  }
  static void TearDownTestSuite() { delete temp_; }
  static std::filesystem::path config() { return temp_->path() / "config.json"; }
  static std::filesystem::path run() { return temp_->path() / "cli_run"; }
  static std::string threads() { return " --threads " + std::to_string(at::get_num_threads()); }
  static TempDir* temp_;
};
TempDir* PublicApi::temp_ = nullptr;

TEST_F(PublicApi, GeneratesTheSamePixelsAsDdpmSample) {
  const std::filesystem::path out = temp_->path() / "cli_samples";
  const auto result = testing::run_ddpm("sample --checkpoint " + run().string() + " --out " +
                                        out.string() + " --num 5 --batch 2 --seed 11" +
                                        " --device cpu" + threads());
  ASSERT_EQ(result.exit_code, 0) << result.output;

  const Pipeline pipeline = Pipeline::load(run().string(), "cpu");
  EXPECT_EQ(pipeline.channels(), 1);
  EXPECT_EQ(pipeline.height(), 8);
  EXPECT_EQ(pipeline.width(), 8);
  EXPECT_EQ(pipeline.step(), 3);
  EXPECT_EQ(pipeline.device(), "cpu");
  EXPECT_TRUE(pipeline.class_names().empty());
  SampleRequest request;
  request.num_images = 5;
  request.batch_size = 3;  // another batching: image k depends on the seed and k only
  request.seed = 11;
  std::vector<SampleProgress> reports;
  request.on_progress = [&](const SampleProgress& p) { reports.push_back(p); };
  const std::vector<GeneratedImage> images = pipeline.generate(request);
  ASSERT_EQ(images.size(), 5u);
  for (const GeneratedImage& image : images) {
    char name[32];
    std::snprintf(name, sizeof name, "sample_%05lld.png", static_cast<long long>(image.index));
    const Image written = read_image(out / name, 1);
    EXPECT_EQ(image.height, written.height);
    EXPECT_EQ(image.width, written.width);
    EXPECT_EQ(image.channels, 1);
    EXPECT_EQ(image.pixels, written.pixels) << name;
  }
  // Two batches (3 + 2 images) of the config's 5 ddim steps.
  ASSERT_EQ(reports.size(), 10u);
  EXPECT_EQ(reports.back().images_done, 3);
  EXPECT_EQ(reports.back().batch_images, 2);
  EXPECT_EQ(reports.back().step, 5);
  EXPECT_EQ(reports.back().steps_total, 5);

  // The tensor form holds the same images before rounding to 8 bits.
  const at::Tensor tensor = pipeline.generate_tensor(request);
  ASSERT_EQ(tensor.sizes(), (std::vector<int64_t>{5, 1, 8, 8}));
  for (int64_t k = 0; k < 5; ++k) {
    EXPECT_EQ(tensor_to_image(tensor[k]).pixels, images[k].pixels) << k;
  }
}

// What `ddpm sample` builds on: the plan of a request, the images batch by batch, an x_T given
// per image, and the predicted x0 along the way.
TEST_F(PublicApi, PlansStreamsTakesAnXtAndPreviews) {
  const Pipeline pipeline = Pipeline::load(run().string(), "cpu");
  EXPECT_EQ(pipeline.weights(), "ema");
  EXPECT_TRUE(pipeline.source_path().ends_with("step_000000003.pt")) << pipeline.source_path();
  EXPECT_CONTAINS(pipeline.device_description(), "cpu");
  SampleRequest request;
  request.num_images = 5;
  request.batch_size = 2;
  request.seed = 4;
  const SamplePlan plan = pipeline.plan(request);
  EXPECT_EQ(plan.num_images, 5);
  EXPECT_EQ(plan.batch_size, 2);
  EXPECT_EQ(plan.sampler, "ddim");  // the config's sample section: 5 ddim steps
  EXPECT_EQ(plan.steps, 5);
  EXPECT_EQ(plan.network_evaluations, 5);
  EXPECT_EQ(plan.seed, 4u);
  EXPECT_TRUE(plan.image_classes.empty());
  request.num_images = 0;  // the model's own sample.num_images
  EXPECT_EQ(pipeline.plan(request).num_images, 4);
  request.num_images = 5;

  // Batch by batch, in order, the images of generate_tensor.
  std::vector<int64_t> firsts;
  std::vector<at::Tensor> batches;
  pipeline.generate_batches(request, [&](int64_t first, const at::Tensor& images) {
    firsts.push_back(first);
    batches.push_back(images);
  });
  EXPECT_EQ(firsts, (std::vector<int64_t>{0, 2, 4}));
  const at::Tensor whole = pipeline.generate_tensor(request);
  EXPECT_TRUE(torch::equal(torch::cat(batches), whole));

  // Previews every 2 steps and at the last; the last x0 is the image (every sampler's last step
  // returns its x0).
  std::vector<SamplePreview> previews;
  request.preview_every = 2;
  request.on_preview = [&](const SamplePreview& preview) { previews.push_back(preview); };
  pipeline.generate_tensor(request);
  ASSERT_EQ(previews.size(), 9u);  // steps 2, 4, 5 of three batches
  EXPECT_EQ(previews[0].step, 2);
  EXPECT_EQ(previews[2].step, 5);
  EXPECT_EQ(previews[2].x0.size(), 2u * 64);
  const at::Tensor last = torch::tensor(previews[8].x0).reshape({1, 1, 8, 8});
  EXPECT_TRUE(torch::equal(last, whole.slice(0, 4, 5)));
  request.on_preview = nullptr;

  // A given x_T: image k starts from row k, whatever the batching; another x_T, other images.
  torch::manual_seed(3);
  const at::Tensor x_T = torch::randn({6, 1, 8, 8});
  request.initial_noise.assign(x_T.data_ptr<float>(), x_T.data_ptr<float>() + x_T.numel());
  const at::Tensor given = pipeline.generate_tensor(request);
  request.batch_size = 5;  // other batch sizes may pick other kernels: equal to float rounding
  EXPECT_TRUE(torch::allclose(pipeline.generate_tensor(request), given, 0.0, 1e-4));
  EXPECT_GT((given - whole).abs().max().item<double>(), 0.1);
  request.initial_noise.resize(4 * 64);  // fewer images than asked for
  EXPECT_CONTAINS(testing::error_of([&] { pipeline.generate(request); }), "initial_noise");
}

TEST_F(PublicApi, TrainsTheSameWeightsAsDdpmTrain) {
  TrainRequest request;
  request.config_file = config().string();
  request.run_dir = (temp_->path() / "api_run").string();
  std::vector<TrainStepReport> steps;
  request.on_step = [&](const TrainStepReport& report) { steps.push_back(report); };
  const TrainReport report = train_model(request);
  EXPECT_EQ(report.first_step, 0);
  EXPECT_EQ(report.last_step, 3);
  EXPECT_FALSE(report.stopped);
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps.back().step, 3);
  EXPECT_EQ(steps.back().total, 3);
  EXPECT_DOUBLE_EQ(steps.back().loss, report.last_loss);
  const TrainingState api = load_checkpoint(report.last_checkpoint);
  const TrainingState cli = load_checkpoint(resolve_checkpoint(run()));
  ASSERT_EQ(api.model.size(), cli.model.size());
  for (const auto& [name, tensor] : cli.model) {
    EXPECT_TRUE(torch::equal(tensor, api.model.at(name))) << name;
  }

  // Resuming the finished run (with its own config.json) returns at once, at step 3.
  std::atomic<bool> stop{true};
  request.resume = true;
  request.config_file.clear();  // the run's own config.json
  request.stop = &stop;
  const TrainReport resumed = train_model(request);
  EXPECT_EQ(resumed.first_step, 3);
  EXPECT_EQ(resumed.last_step, 3);
}

TEST_F(PublicApi, StopsWhenAsked) {
  TrainRequest request;
  request.config_file = config().string();
  request.overrides = {"train.steps=50"};
  request.run_dir = (temp_->path() / "stopped_run").string();
  std::atomic<bool> stop{false};
  request.stop = &stop;
  request.on_step = [&](const TrainStepReport& report) {
    if (report.step == 2) stop = true;
  };
  const TrainReport report = train_model(request);
  EXPECT_TRUE(report.stopped);
  EXPECT_EQ(report.last_step, 2);
  EXPECT_EQ(load_checkpoint(report.last_checkpoint).step, 2);

  const Pipeline pipeline = Pipeline::load(run().string(), "cpu");
  std::atomic<bool> cancel{false};
  SampleRequest sample;
  sample.num_images = 2;
  sample.cancel = &cancel;
  sample.on_progress = [&](const SampleProgress& p) {
    if (p.step == 2) cancel = true;
  };
  try {
    pipeline.generate(sample);
    ADD_FAILURE() << "a cancelled generate() returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::interrupted);
    EXPECT_CONTAINS(error.what(), "cancelled at step 3");
  }
}

TEST_F(PublicApi, ErrorsAreTheClisMessages) {
  // A missing checkpoint: the same message from the API as from the CLI.
  const std::string missing = (temp_->path() / "nowhere.pt").string();
  const std::string api = testing::error_of([&] { Pipeline::load(missing, "cpu"); });
  const auto cli = testing::run_ddpm("sample --checkpoint " + missing + " --out " +
                                     (temp_->path() / "unused").string());
  EXPECT_EQ(cli.exit_code, 1);
  EXPECT_CONTAINS(cli.output, api);
  EXPECT_CONTAINS(api, missing);

  const Pipeline pipeline = Pipeline::load(run().string(), "cpu");
  SampleRequest request;
  request.sampler = "ddpn";
  EXPECT_CONTAINS(testing::error_of([&] { pipeline.generate(request); }), "ddpm");
  request.sampler.clear();
  request.classes = {"3"};
  const std::string unconditional = testing::error_of([&] { pipeline.generate(request); });
  const auto cli_class = testing::run_ddpm("sample --checkpoint " + run().string() + " --out " +
                                           (temp_->path() / "unused").string() + " --class 3");
  EXPECT_EQ(cli_class.exit_code, 2);
  EXPECT_CONTAINS(cli_class.output, unconditional);
  request.classes.clear();
  request.overrides = {"train.lr=1"};
  EXPECT_CONTAINS(testing::error_of([&] { pipeline.generate(request); }), "sample section");

  TrainRequest train;
  train.run_dir = (temp_->path() / "no_config").string();
  EXPECT_CONTAINS(testing::error_of([&] { train_model(train); }), "--config FILE");
  try {
    train_model(train);
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2);
  }
}

TEST(PublicHeader, CompilesOnItsOwnWithTheStandardLibraryOnly) {
  TempDir temp("public_header");
  std::ofstream(temp.path() / "use.cpp") << "#include <ddpm/ddpm.h>\n"
                                            "int main() { return ddpm::version().empty(); }\n";
  const auto result = testing::run_command(
      std::string(DDPM_CXX_COMPILER) + " -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I" +
      DDPM_SOURCE_DIR + "/include " + (temp.path() / "use.cpp").string());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(version(), DDPM_VERSION);
}

// Every dynamic symbol libddpm.so defines, demangled.
std::vector<std::string> exported_symbols(const std::string& library) {
  const auto result = testing::run_command("nm -D --defined-only -C " + library +
                                           " | cut -d' ' -f3-");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::vector<std::string> symbols;
  std::istringstream lines(result.output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) symbols.push_back(line);
  }
  return symbols;
}

TEST(PublicLibrary, ExportsTheApiAndNothingElse) {
  if (!DDPM_LIBRARY_SHARED) GTEST_SKIP() << "libddpm is built static (DDPM_SHARED_LIBRARY=OFF)";
  const std::vector<std::string> symbols = exported_symbols(DDPM_LIBRARY_FILE);
  const std::vector<std::string> allowed = {
      "ddpm::Pipeline::", "ddpm::train_model(", "ddpm::version[", "ddpm::Error::",
      "ddpm::config_error(", "typeinfo for ddpm::Error", "typeinfo name for ddpm::Error",
      "vtable for ddpm::Error"};
  for (const std::string& symbol : symbols) {
    const bool known = std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
      return symbol.starts_with(a);
    });
    EXPECT_TRUE(known) << "libddpm exports '" << symbol << "', which is not in ddpm.h";
  }
  for (const char* needed :
       {"ddpm::Pipeline::load(", "ddpm::Pipeline::generate(", "ddpm::Pipeline::generate_tensor(",
        "ddpm::train_model(", "ddpm::version[", "typeinfo for ddpm::Error"}) {
    EXPECT_TRUE(std::any_of(symbols.begin(), symbols.end(),
                            [&](const std::string& s) { return s.starts_with(needed); }))
        << "libddpm does not export " << needed;
  }
  EXPECT_GT(symbols.size(), 15u);
  EXPECT_LT(symbols.size(), 40u);
}

}  // namespace
}  // namespace ddpm
