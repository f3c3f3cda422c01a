// The Hugging Face commands on bad input, through the CLI: every broken folder, file or option is
// an error below exit 128 that names the file (and the tensor or field), and nothing is
// overwritten. (The comparisons with diffusers itself are in hf_interop_check.py.)
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

#include "config/config_json.h"
#include "formats/safetensors.h"
#include "formats/weights.h"
#include "interop/diffusers_config.h"
#include "interop/diffusers_folder.h"
#include "model/unet.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A small UNet2DModel for 1x8x8 images, in the flat layout.
const json kUnet = json::parse(R"({"_class_name": "UNet2DModel", "sample_size": 8,
  "in_channels": 1, "out_channels": 1, "block_out_channels": [16, 32], "layers_per_block": 1,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8,
  "attention_head_dim": null, "norm_eps": 1e-6, "flip_sin_to_cos": false, "freq_shift": 1,
  "downsample_padding": 0})");
const json kScheduler = json::parse(R"({"_class_name": "DDPMScheduler",
  "num_train_timesteps": 100, "variance_type": "fixed_large"})");

void write_json(const fs::path& file, const json& value) { std::ofstream(file) << value.dump(); }

WeightMap random_weights() {
  std::vector<std::string> warnings;
  const Config config = config_from_diffusers(kUnet, &kScheduler, "test", warnings);
  torch::manual_seed(0);
  UNet model(config.model, config.data);
  WeightMap weights;
  for (const auto& entry : state_dict(*model)) weights[entry.key()] = entry.value();
  return weights;
}

fs::path make_folder(const fs::path& folder, const WeightMap& weights = random_weights()) {
  fs::create_directories(folder);
  write_json(folder / "config.json", kUnet);
  write_json(folder / "scheduler_config.json", kScheduler);
  write_safetensors(folder / "diffusion_pytorch_model.safetensors", weights);
  return folder;
}

class HfCli : public ::testing::Test {
 protected:
  HfCli() : temp_("hf_cli") {}
  fs::path path(const std::string& name) const { return temp_.path() / name; }

  // Runs ddpm; expects an error exit below 128 whose message contains every `expected` text.
  std::string expect_error(const std::string& arguments, const std::vector<std::string>& expected,
                           int exit_code = 1) {
    const auto start = std::chrono::steady_clock::now();
    const testing::CommandResult result = testing::run_ddpm(arguments + " --threads 2");
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(result.exit_code, exit_code) << arguments << "\n" << result.output;
    for (const auto& text : expected) EXPECT_CONTAINS(result.output, text);
    // A guard against hanging or reading a hostile size, not a speed target.
    EXPECT_LT(seconds, 60.0) << arguments;
    return result.output;
  }
  std::string sample_args(const fs::path& source) const {
    return "sample --checkpoint " + source.string() + " --out " + path("out").string() +
           " --num 1 --sampler ddim --steps 2";
  }

  testing::TempDir temp_;
};

TEST_F(HfCli, AGoodFolderSamplesImportsAndExports) {
  const fs::path folder = make_folder(path("good"));
  EXPECT_EQ(testing::run_ddpm(sample_args(folder)).exit_code, 0);
  EXPECT_TRUE(fs::exists(path("out") / "sample_00000.png"));
  const auto imported = testing::run_ddpm("import " + folder.string() + " --out " +
                                          path("good.pt").string());
  EXPECT_EQ(imported.exit_code, 0) << imported.output;
  const auto exported = testing::run_ddpm("export --checkpoint " + path("good.pt").string() +
                                          " --out " + path("exported").string());
  EXPECT_EQ(exported.exit_code, 0) << exported.output;
  for (const char* file : {"model_index.json", "unet/config.json",
                           "unet/diffusion_pytorch_model.safetensors",
                           "scheduler/scheduler_config.json"}) {
    EXPECT_TRUE(fs::exists(path("exported") / file)) << file;
  }
}

// A folder whose scheduler is another diffusers scheduler samples with the matching sampler,
// with that class's defaults (scheduler configs as diffusers 0.42.1's save_config writes them,
// tests/data/diffusers-schedulers/, including DPMSolverMultistepScheduler's -Infinity).
TEST_F(HfCli, TheFoldersSchedulerPicksTheSampler) {
  const fs::path folder = make_folder(path("scheduled"));
  const fs::path fixtures = fs::path(DDPM_SOURCE_DIR) / "tests" / "data" / "diffusers-schedulers";
  struct Expected {
    std::string file, sampler, spacing;
    bool clip;
    int steps;
  };
  for (const Expected& expected : std::vector<Expected>{
           {"dpmsolver_sde_karras.json", "dpmpp_2m_sde", "karras", false, 50},
           {"dpmsolver_default.json", "dpmpp_2m", "linspace", false, 50},
           {"euler_default.json", "euler", "linspace", false, 50},
           {"euler_ancestral_trailing.json", "euler_ancestral", "trailing", false, 50},
           {"heun_clip.json", "heun", "linspace", true, 50},
           {"ddim_default.json", "ddim", "leading", true, 50},
           {"pndm_default.json", "ddpm", "leading", true, 1000}}) {
    fs::copy_file(fixtures / expected.file, folder / "scheduler_config.json",
                  fs::copy_options::overwrite_existing);
    const auto printed = testing::run_ddpm("config --checkpoint " + folder.string());
    ASSERT_EQ(printed.exit_code, 0) << expected.file << "\n" << printed.output;
    const json config = json::parse(printed.output.substr(printed.output.find('{')));
    const json& sample = config.at("sample");
    EXPECT_EQ(sample.at("sampler"), expected.sampler) << expected.file;
    EXPECT_EQ(sample.at("spacing"), expected.spacing) << expected.file;
    EXPECT_EQ(sample.at("clip_denoised"), expected.clip) << expected.file;
    EXPECT_EQ(sample.at("steps"), expected.steps) << expected.file;
    if (expected.file == "pndm_default.json") {
      EXPECT_CONTAINS(printed.output, "PNDMScheduler has no ddpm counterpart");
    }
  }
  // And it samples with it.
  EXPECT_EQ(testing::run_ddpm("sample --checkpoint " + folder.string() + " --out " +
                              path("out").string() + " --num 1 --steps 3 --sampler dpmpp_2m")
                .exit_code,
            0);
}

TEST_F(HfCli, BrokenWeightFilesNameTheFile) {
  const fs::path folder = make_folder(path("truncated"));
  const fs::path weights = folder / "diffusion_pytorch_model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  expect_error(sample_args(folder), {weights.string(), "outside the data buffer"});

  const fs::path garbage = make_folder(path("garbage"));
  std::ofstream(garbage / "diffusion_pytorch_model.safetensors", std::ios::binary)
      << std::string("\xff\xff\xff\xff\xff\xff\x00\x00{}", 10);
  expect_error(sample_args(garbage), {"diffusion_pytorch_model.safetensors", "longer than the file"});

  WeightMap incomplete = random_weights();
  incomplete.erase("conv_in.weight");
  expect_error(sample_args(make_folder(path("incomplete"), incomplete)),
               {"incomplete", "has no tensor 'conv_in.weight'"});

  const fs::path bin = path("bin");
  fs::create_directories(bin);
  write_json(bin / "config.json", kUnet);
  write_pickle_file(bin / "diffusion_pytorch_model.bin", c10::IValue(torch::ones({3})));
  expect_error(sample_args(bin), {"diffusion_pytorch_model.bin", "does not hold a dict of tensors"});
  std::ofstream(bin / "diffusion_pytorch_model.bin", std::ios::binary) << "PK\x03\x04 not a zip";
  expect_error(sample_args(bin), {"diffusion_pytorch_model.bin", "truncated or corrupt"});

  const fs::path empty = path("no_weights");
  fs::create_directories(empty);
  write_json(empty / "config.json", kUnet);
  expect_error(sample_args(empty), {"no_weights", "holds no weights"});
}

TEST_F(HfCli, ShardIndexesStayInsideTheFolderAndMustBeComplete) {
  const fs::path folder = path("sharded");
  fs::create_directories(folder);
  write_json(folder / "config.json", kUnet);
  const fs::path index = folder / "diffusion_pytorch_model.safetensors.index.json";
  write_json(index, {{"weight_map", {{"conv_in.weight", "../outside.safetensors"}}}});
  expect_error(sample_args(folder), {index.string(), "not a file name in the same folder"});
  write_json(index, {{"weight_map", {{"conv_in.weight", "shard-1.safetensors"}}}});
  expect_error(sample_args(folder), {index.string(), "'shard-1.safetensors', which is missing"});
  write_safetensors(folder / "shard-1.safetensors", {{"conv_out.bias", torch::ones({1})}});
  expect_error(sample_args(folder), {"shard-1.safetensors", "holds tensor 'conv_out.bias'"});
}

TEST_F(HfCli, BadConfigsNameTheFileAndField) {
  const fs::path folder = make_folder(path("bad_config"));
  std::ofstream(folder / "config.json") << "{\"sample_size\": 8,";
  expect_error(sample_args(folder), {(folder / "config.json").string(), "not valid JSON"});
  // A "config" of 64 MiB + 1 (sparse) is refused unread, naming the limit.
  fs::resize_file(folder / "config.json", (uintmax_t{64} << 20) + 1);
  expect_error(sample_args(folder), {(folder / "config.json").string(), "is 67108865 bytes",
                                     "kMaxDiffusersJsonBytes"});

  json unsupported = kUnet;
  unsupported["act_fn"] = "gelu";
  write_json(folder / "config.json", unsupported);
  expect_error(sample_args(folder),
               {"bad_config (UNet config): field 'act_fn' is \"gelu\"", "\"silu\" (swish) only"},
               2);
  json scheduler = kScheduler;
  scheduler["prediction_type"] = "flow_prediction";
  write_json(folder / "config.json", kUnet);
  write_json(folder / "scheduler_config.json", scheduler);
  expect_error(sample_args(folder),
               {"scheduler config", "prediction_type", "epsilon, sample or v_prediction"}, 2);

  expect_error(sample_args(path("nothing_here")), {"nothing_here", "does not exist"});
  fs::create_directories(path("empty_folder"));
  expect_error(sample_args(path("empty_folder")), {"empty_folder", "is neither a run directory"});
  expect_error(sample_args(make_folder(path("file")) / "diffusion_pytorch_model.safetensors"),
               {"pass the folder that holds it"}, 2);
}

TEST_F(HfCli, NoiseMustFitTheModel) {
  const fs::path folder = make_folder(path("noise_model"));
  write_pickle_file(path("small.pt"), c10::IValue(torch::randn({1, 1, 4, 4})));
  expect_error(sample_args(folder) + " --noise " + path("small.pt").string(),
               {"small.pt", "has shape [1, 1, 4, 4]", "[N, 1, 8, 8] with N >= --num (1)"});
  write_pickle_file(path("few.pt"), c10::IValue(torch::randn({1, 1, 8, 8})));
  expect_error(sample_args(folder) + " --num 2 --noise " + path("few.pt").string(),
               {"few.pt", "N >= --num (2)"});
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert("x", torch::ones({1}));
  write_pickle_file(path("dict.pt"), c10::IValue(dict));
  expect_error(sample_args(folder) + " --noise " + path("dict.pt").string(),
               {"dict.pt", "does not hold a tensor"});
  write_pickle_file(path("nan.pt"), c10::IValue(torch::full({1, 1, 8, 8}, NAN)));
  expect_error(sample_args(folder) + " --noise " + path("nan.pt").string(),
               {"nan.pt", "NaN or infinite"});
  expect_error(sample_args(folder) + " --noise " + path("absent.pt").string(),
               {"absent.pt", "cannot be opened"});
}

TEST_F(HfCli, NothingIsOverwrittenWithoutOverwrite) {
  const fs::path folder = make_folder(path("source"));
  std::ofstream(path("taken.pt")) << "a user's file";
  expect_error("import " + folder.string() + " --out " + path("taken.pt").string(),
               {"taken.pt", "--overwrite"}, 2);
  EXPECT_EQ(testing::read_text(path("taken.pt")), "a user's file");
  fs::create_directories(path("taken_dir"));
  std::ofstream(path("taken_dir") / "notes.txt") << "mine";
  expect_error("export --checkpoint " + folder.string() + " --out " + path("taken_dir").string(),
               {"taken_dir", "is not empty", "--overwrite"}, 2);
  const auto overwritten = testing::run_ddpm("export --checkpoint " + folder.string() + " --out " +
                                             path("taken_dir").string() + " --overwrite");
  EXPECT_EQ(overwritten.exit_code, 0) << overwritten.output;
  EXPECT_EQ(testing::read_text(path("taken_dir") / "notes.txt"), "mine");
  expect_error("export --checkpoint " + folder.string() + " --out " + path("x").string() +
                   " --weights best",
               {"--weights must be ema or model"}, 2);
  expect_error("import " + path("taken.pt").string() + " --out " + path("y.pt").string(),
               {"taken.pt"});
}

TEST_F(HfCli, InitFromRefusesAnotherModelAndResume) {
  const fs::path folder = make_folder(path("init"));
  testing::write_image_folder(path("images"), 4, 8, 8);
  const fs::path config = path("train.json");
  std::ofstream(config) << testing::small_train_config(path("images"), 1);
  // small_train_config's model is the folder's; with other GroupNorm groups it is not.
  expect_error("train --config " + config.string() + " --out " + path("run").string() +
                   " --set model.norm_groups=4 --init-from " + folder.string(),
               {"config key 'model.norm_groups': is 4 but --init-from '" + folder.string() +
                    "' has 8",
                "ddpm config --checkpoint"},
               2);
  expect_error("train --config " + config.string() + " --out " + path("run").string() +
                   " --resume --init-from " + folder.string(),
               {"--init-from starts a new run"}, 2);
  EXPECT_FALSE(fs::exists(path("run") / "checkpoints"));
}

}  // namespace
}  // namespace ddpm
