// The sampling core's network, whatever runs it (model/network.h): a batch over the network's
// maximum is refused before any call, guidance's doubled batch counted; a network that computes
// in its own precision (a compiled package) runs without autocast; and what the package loader
// says of files that are not packages (compiled_network.h). Packages themselves are compiled
// and sampled by tests/compile_package_check.py (it needs torch's Python).
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <fstream>

#include "ddpm/error.h"
#include "diffusion/generation.h"
#include "diffusion/guidance.h"
#include "interop/model_source.h"
#include "model/compiled_network.h"
#include "test_support.h"

namespace ddpm {
namespace {

using testing::error_of;

// Predicts zero noise; records the batches it was given and whether autocast was on.
class FakeNetwork final : public Network {
 public:
  FakeNetwork(int64_t limit, bool autocast) : limit_(limit), autocast_(autocast) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&,
                        const torch::Tensor&) override {
    batches.push_back(x.size(0));
    saw_autocast = at::autocast::is_autocast_enabled(at::kCPU);
    return torch::zeros_like(x);
  }
  int64_t no_class() const override { return 2; }
  bool takes_autocast() const override { return autocast_; }
  int64_t max_batch() const override { return limit_; }
  std::vector<int64_t> batches;
  bool saw_autocast = false;

 private:
  int64_t limit_;
  bool autocast_;
};

Config small_config() {
  Config config;
  config.data.channels = 1;
  config.data.height = config.data.width = 8;
  config.diffusion.timesteps = 20;
  config.sample.sampler = SamplerKind::ddim;
  config.sample.steps = 2;
  return config;
}

// A 2-step DDIM request on 1x8x8 images with a network that takes at most 4 images per call.
struct SmallRequest {
  Config config = small_config();
  NoiseSchedule schedule{config.diffusion};
  FakeNetwork network{4, true};
  SampleSettings settings = sample_settings(config);
};

TEST(Network, CoreRefusesABatchOverTheMaximumBeforeAnyCall) {
  SmallRequest request;
  auto& [config, schedule, network, settings] = request;
  settings.batch_size = 6;
  int taken = 0;
  const auto take = [&](int64_t, const torch::Tensor&) { ++taken; };
  const std::string message =
      error_of([&] { sample_all(network, schedule, settings, {}, 12, take); });
  EXPECT_CONTAINS(message, "a batch of 6 images is over the 4 images per call");
  EXPECT_CONTAINS(message, "--max-batch");
  EXPECT_TRUE(network.batches.empty());
  EXPECT_EQ(taken, 0);

  // Fewer images than the batch size: the batch that runs is what counts.
  sample_all(network, schedule, settings, {}, 3, take);
  EXPECT_EQ(taken, 1);
  EXPECT_EQ(network.batches, (std::vector<int64_t>{3, 3}));  // 2 steps of 3 images
}

TEST(Network, GuidanceDoublesTheBatchTheMaximumIsCheckedAgainst) {
  SmallRequest request;
  auto& [config, schedule, network, settings] = request;
  settings.guidance = 3.0;
  settings.batch_size = 3;
  SampleInputs inputs;
  inputs.labels = {0, 1, 0, 1};
  const auto take = [](int64_t, const torch::Tensor&) {};
  const std::string message =
      error_of([&] { sample_all(network, schedule, settings, inputs, 4, take); });
  EXPECT_CONTAINS(message, "6 per network call");
  EXPECT_CONTAINS(message, "to at most 2");
  EXPECT_TRUE(network.batches.empty());
  settings.batch_size = 2;
  sample_all(network, schedule, settings, inputs, 4, take);
  EXPECT_EQ(network.batches, (std::vector<int64_t>{4, 4, 4, 4}));  // 2 batches x 2 steps
  EXPECT_EQ(network_batch(2, 3.0), 4);
  EXPECT_EQ(network_batch(2, 1.0), 2);
  EXPECT_EQ(network_batch(2, 0.0), 2);
}

TEST(Network, OnlyANetworkThatTakesAutocastRunsUnderIt) {
  const torch::Tensor x = torch::zeros({2, 1, 8, 8});
  const torch::Tensor t = torch::full({2}, 5, torch::kLong);
  FakeNetwork eager(0, true);
  guided_predictor(eager, {}, 1.0, Precision::bf16)(x, t);
  EXPECT_TRUE(eager.saw_autocast);
  FakeNetwork compiled(0, false);
  guided_predictor(compiled, {}, 1.0, Precision::bf16)(x, t);
  EXPECT_FALSE(compiled.saw_autocast);
}

TEST(CompiledNetwork, FilesThatAreNotPackagesAreRefusedByName) {
  EXPECT_TRUE(is_package_path("model.pt2"));
  EXPECT_TRUE(is_package_path("dir/MODEL.PT2"));
  EXPECT_FALSE(is_package_path("model.pt"));
  const testing::TempDir dir("compiled_network");
  const std::filesystem::path missing = dir.path() / "missing.pt2";
  EXPECT_CONTAINS(error_of([&] { read_package_info(missing); }), "does not exist");
  const std::filesystem::path corrupt = dir.path() / "corrupt.pt2";
  std::ofstream(corrupt) << "not a zip archive at all";
  const std::string message = error_of([&] { read_package_info(corrupt); });
  EXPECT_CONTAINS(message, "corrupt.pt2' is not a readable AOTInductor package");
  EXPECT_CONTAINS(message, "ddpm compile");
  // Every command that reads a model refuses it the same way, exit 2.
  try {
    load_sampling_source(corrupt);
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2);
  }
  EXPECT_CONTAINS(error_of([&] { load_model_source(corrupt); }), "not a readable AOTInductor");
}

TEST(CompiledNetwork, PackagesForAnotherDeviceOrTorchAreRefusedWithWhatToDo) {
  PackageInfo info;
  info.path = "model.pt2";
  info.device = "cuda";
  info.torch_version = "2.0.0";
  EXPECT_CONTAINS(error_of([&] { check_package_runs_here(info, torch::kCPU); }),
                  "was compiled for cuda; this run samples on cpu");
  info.device = "cpu";
  EXPECT_CONTAINS(error_of([&] { check_package_runs_here(info, torch::kCPU); }),
                  "was compiled with torch 2.0.0");
}

}  // namespace
}  // namespace ddpm
