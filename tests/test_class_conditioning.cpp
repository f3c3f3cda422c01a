// Class-conditional training and classifier-free guidance: class folders, the config keys and
// their refusals, the class embedding (and that unconditional models are unchanged), guidance
// against two separate forward passes, class dropout, labels through the data loader, and a
// synthetic end-to-end run whose classes are constant grey levels.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "config/config_json.h"
#include "data/class_folders.h"
#include "data/dataset.h"
#include "ddpm/error.h"
#include "diffusion/guidance.h"
#include "formats/image_io.h"
#include "model/unet.h"
#include "test_support.h"
#include "train/train_step.h"

namespace ddpm {
namespace {

using testing::error_of;

namespace fs = std::filesystem;
using testing::run_ddpm;
using testing::TempDir;

// Every weight drawn from N(0, 0.1^2), so that no output is zero by construction (conv_out
// starts at zero).
void randomize(UNet& model) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model->parameters()) parameter.normal_(0.0, 0.1);
}

// An 8x8 grayscale PNG of one grey level.
void write_level_image(const fs::path& file, uint8_t level) {
  fs::create_directories(file.parent_path());
  Image image;
  image.height = image.width = 8;
  image.channels = 1;
  image.pixels.assign(64, level);
  write_png(file, image, {});
}

Config conditional_config(int classes) {
  Config config;
  config.data = testing::image_config(1, 8, 8);
  config.model = testing::small_model_config();
  config.model.num_classes = classes;
  return config;
}

TEST(ClassFolders, ClassesAreTheSortedSubfoldersWithTheirImagesFoundRecursively) {
  TempDir temp("class_folders");
  write_level_image(temp.path() / "shoe" / "a.png", 10);
  write_level_image(temp.path() / "shoe" / "deeper" / "b.png", 10);
  write_level_image(temp.path() / "bag" / "c.png", 20);
  const ClassFolders folders = scan_class_folders(temp.path());
  ASSERT_EQ(folders.names, (std::vector<std::string>{"bag", "shoe"}));
  EXPECT_EQ(folders.counts, (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(folders.files.size(), 3u);
  EXPECT_EQ(folders.labels, (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(folders.files[0].filename(), "c.png");
  EXPECT_EQ(describe_classes(folders), "bag: 1, shoe: 2");
}

TEST(ClassFolders, LooseImagesEmptyClassesAndNoSubfoldersAreRefused) {
  TempDir temp("class_folders_bad");
  fs::create_directories(temp.path() / "bare");
  EXPECT_CONTAINS(error_of([&] { scan_class_folders(temp.path() / "bare"); }),
                  "has no subfolders");
  write_level_image(temp.path() / "loose" / "cat" / "y.png", 10);
  write_level_image(temp.path() / "loose" / "stray.png", 10);
  const std::string loose = error_of([&] { scan_class_folders(temp.path() / "loose"); });
  EXPECT_CONTAINS(loose, "lie directly in");
  EXPECT_CONTAINS(loose, "stray.png");
  write_level_image(temp.path() / "empty" / "cat" / "z.png", 10);
  fs::create_directories(temp.path() / "empty" / "dog");
  const std::string empty = error_of([&] { scan_class_folders(temp.path() / "empty"); });
  EXPECT_CONTAINS(empty, "dog");
  EXPECT_CONTAINS(empty, "holds no image files");
  EXPECT_CONTAINS(error_of([&] { scan_class_folders(temp.path() / "missing"); }),
                  "does not exist");
}

TEST(ClassFolders, TheRunTakesItsClassesFromTheDataAndRefusesOtherClasses) {
  ClassFolders folders;
  folders.names = {"0", "1", "2"};
  Config config;
  config.data.labels = LabelSource::folders;
  const Config resolved = with_class_labels(config, &folders);
  EXPECT_EQ(resolved.model.num_classes, 3);
  EXPECT_EQ(resolved.data.classes, folders.names);
  Config resumed = resolved;  // a resumed run whose folder now has other classes
  folders.names = {"0", "1", "3"};
  const std::string message = error_of([&] { with_class_labels(resumed, &folders); });
  EXPECT_CONTAINS(message, "data.classes");
  EXPECT_CONTAINS(message, "[0, 1, 2]");
  EXPECT_CONTAINS(message, "[0, 1, 3]");
  Config unlabelled;
  unlabelled.model.num_classes = 4;
  EXPECT_CONTAINS(error_of([&] { with_class_labels(unlabelled, nullptr); }), "data.labels");
}

TEST(ClassConfig, KeysRoundTripAndImpossibleValuesAreRefused) {
  Config config;
  config.data.labels = LabelSource::folders;
  config.data.classes = {"a", "b"};
  config.model.num_classes = 2;
  config.train.class_dropout = 0.25;
  config.sample.guidance = 3.5;
  EXPECT_EQ(config_from_json(config_to_json(config)), config);
  const auto refused = [](const std::string& key, const std::string& value) {
    nlohmann::json json = config_to_json(Config{});
    apply_override(json, key + "=" + value);
    return error_of([&] { config_from_json(json); });
  };
  EXPECT_CONTAINS(refused("data.labels", "subfolders"), "data.labels");
  EXPECT_CONTAINS(refused("data.classes", "[\"a\",\"a\"]"), "twice");
  EXPECT_CONTAINS(refused("data.classes", "[\"a/b\"]"), "not a folder name");
  EXPECT_CONTAINS(refused("model.num_classes", "-1"), "model.num_classes");
  EXPECT_CONTAINS(refused("train.class_dropout", "1"), "train.class_dropout");
  EXPECT_CONTAINS(refused("sample.guidance", "-0.5"), "sample.guidance");
}

TEST(ClassEmbedding, UnconditionalModelsAreUnchangedAndTheEmbeddingIsAddedToTheTimeEmbedding) {
  torch::manual_seed(5);
  UNet unconditional(testing::small_model_config(), testing::image_config(1, 8, 8));
  torch::manual_seed(5);
  UNet conditional(conditional_config(3).model, conditional_config(3).data);
  // The same initial weights but for the embedding, which an unconditional model lacks.
  const auto plain = unconditional->named_parameters();
  const auto with_classes = conditional->named_parameters();
  EXPECT_EQ(plain.size() + 1, with_classes.size());
  EXPECT_EQ(plain.find("class_embedding.weight"), nullptr);
  ASSERT_NE(with_classes.find("class_embedding.weight"), nullptr);
  EXPECT_EQ(with_classes["class_embedding.weight"].sizes(), (std::vector<int64_t>{4, 64}));
  for (const auto& item : plain) {
    EXPECT_TRUE(torch::equal(item.value(), with_classes[item.key()])) << item.key();
  }
  randomize(unconditional);
  randomize(conditional);
  torch::NoGradGuard no_grad;
  for (const auto& item : unconditional->named_parameters()) {
    conditional->named_parameters()[item.key()].copy_(item.value());
  }
  unconditional->eval();
  conditional->eval();
  const auto x = torch::randn({3, 1, 8, 8});
  const auto t = torch::tensor({5, 50, 95});
  const auto labels = torch::tensor({0, 1, 3});
  EXPECT_THROW(unconditional->forward(x, t, labels), c10::Error);
  // A zero embedding row adds nothing: the output is the unconditional network's.
  conditional->class_embedding->weight.zero_();
  EXPECT_TRUE(torch::equal(conditional->forward(x, t, labels), unconditional->forward(x, t)));
  conditional->class_embedding->weight.normal_();
  const auto by_class = conditional->forward(x, t, labels);
  EXPECT_GT((by_class - unconditional->forward(x, t)).abs().max().item<double>(), 1e-4);
  // Without labels every image is "no class" (row 3).
  EXPECT_TRUE(torch::equal(conditional->forward(x, t), conditional->forward(
                                                           x, t, torch::full({3}, 3L))));
}

TEST(Guidance, OneBatchedPassEqualsTheFormulaOverTwoSeparatePasses) {
  torch::manual_seed(2);
  UNet model(conditional_config(4).model, conditional_config(4).data);
  randomize(model);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({4, 1, 8, 8});
  const auto t = torch::tensor({1, 30, 60, 99});
  const auto labels = torch::tensor({0, 1, 2, 3});
  const auto conditional = model->forward(x, t, labels);
  const auto unconditional = model->forward(x, t, torch::full({4}, 4L));
  for (const double w : {0.0, 1.0, 2.5, 7.0}) {
    const auto guided = guided_predictor(model, labels, w)(x, t);
    const auto expected = unconditional + w * (conditional - unconditional);
    // float32: the batched pass may take other kernels than the separate ones.
    EXPECT_LT((guided - expected).abs().max().item<double>(),
              1e-5 * (1.0 + w) * conditional.abs().max().item<double>())
        << "W = " << w;
  }
  // An unconditional model's predictor is the plain forward pass.
  UNet plain(testing::small_model_config(), testing::image_config(1, 8, 8));
  randomize(plain);
  plain->eval();
  EXPECT_TRUE(torch::equal(guided_predictor(plain, {}, 1.0)(x, t), plain->forward(x, t)));
}

TEST(Guidance, ClassesInTurnAndClassNames) {
  EXPECT_EQ(classes_in_turn({0, 1, 2}, 7), (std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(classes_in_turn({5}, 3), (std::vector<int64_t>{5, 5, 5}));
  Config config = conditional_config(3);
  config.data.classes = {"bag", "shoe", "shirt"};
  EXPECT_EQ(resolve_class("shoe", config), 1);
  EXPECT_EQ(resolve_class("2", config), 2);
  const std::string unknown = error_of([&] { resolve_class("hat", config); });
  EXPECT_CONTAINS(unknown, "no such class");
  EXPECT_CONTAINS(unknown, "0 bag, 1 shoe, 2 shirt");
  EXPECT_CONTAINS(error_of([&] { resolve_class("3", config); }), "no such class");
  EXPECT_CONTAINS(error_of([&] { resolve_class("0", Config{}); }), "unconditional");
  EXPECT_EQ(class_name(config, 2), "shirt");
}

TEST(ClassDropout, DropsAtTheRateAskedAndDependsOnlyOnTheExample) {
  const int64_t n = 100000;
  const auto labels = torch::zeros({n}, torch::kLong);
  const auto dropped = drop_classes(labels, 0.1, 7, {3, 12, 0});
  const double rate = dropped.eq(7).sum().item<double>() / double(n);
  // Binomial(n, 0.1): standard deviation 0.00095; 5 of them.
  EXPECT_NEAR(rate, 0.1, 0.005);
  EXPECT_EQ(dropped.ne(7).logical_and(dropped.ne(0)).sum().item<int64_t>(), 0);
  // The same examples split over two "ranks" drop the same labels.
  const auto halves = torch::cat({drop_classes(labels.narrow(0, 0, 500), 0.1, 7, {3, 12, 0}),
                                  drop_classes(labels.narrow(0, 500, 500), 0.1, 7, {3, 12, 500})});
  EXPECT_TRUE(torch::equal(halves, dropped.narrow(0, 0, 1000)));
  EXPECT_FALSE(torch::equal(drop_classes(labels, 0.1, 7, {3, 13, 0}), dropped));
  EXPECT_EQ(drop_classes(labels, 0.0, 7, {3, 12, 0}).eq(7).sum().item<int64_t>(), 0);
}

TEST(ClassLoader, EveryImageKeepsItsLabelThroughShufflingAndSkippedFiles) {
  TempDir temp("class_loader");
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 7; ++i) {
      write_level_image(temp.path() / std::to_string(c) / (std::to_string(i) + ".png"),
                        static_cast<uint8_t>(40 + 80 * c));
    }
  }
  std::ofstream(temp.path() / "1" / "broken.png") << "not a png";
  const ClassFolders folders = scan_class_folders(temp.path());
  DataConfig data = testing::image_config(1, 8, 8);
  data.random_flip = false;
  DataLoader loader(folders.files, data, 4, 9, 0, 1, folders.labels);
  for (int b = 0; b < 20; ++b) {
    const DataLoader::Batch batch = loader.next_batch();
    ASSERT_TRUE(batch.labels.defined());
    for (int i = 0; i < 4; ++i) {
      const double level = (batch.images[i].mean().item<double>() + 1.0) * 127.5;
      EXPECT_NEAR(level, 40 + 80 * batch.labels[i].item<int64_t>(), 0.01) << "batch " << b;
    }
  }
  EXPECT_EQ(loader.skipped_files(), 1);
}

// Mean grey level of a sample and the class whose level is nearest.
int64_t nearest_level(const fs::path& file, const std::vector<double>& levels) {
  const Image image = read_image(file, 1);
  double sum = 0.0;
  for (uint8_t value : image.pixels) sum += value;
  const double mean = sum / double(image.pixels.size());
  int64_t best = 0;
  for (size_t c = 1; c < levels.size(); ++c) {
    if (std::abs(mean - levels[c]) < std::abs(mean - levels[best])) best = int64_t(c);
  }
  return best;
}

TEST(ClassConditionalTraining, SamplesOfEachClassLandOnItsGreyLevel) {
  TempDir temp("class_levels");
  const std::vector<double> levels = {40, 128, 215};
  const std::vector<std::string> names = {"dark", "grey", "light"};
  for (size_t c = 0; c < levels.size(); ++c) {
    for (int i = 0; i < 16; ++i) {
      write_level_image(temp.path() / "data" / names[c] / (std::to_string(i) + ".png"),
                        static_cast<uint8_t>(levels[c]));
    }
  }
  const std::string data = (temp.path() / "data").string();
  std::ofstream(temp.path() / "config.json") << R"({
  "data": {"labels": "folders", "image_size": 8, "channels": 1, "random_flip": false},
  "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
            "attention_resolutions": [], "norm_groups": 8, "dropout": 0.0},
  "diffusion": {"timesteps": 100},
  "train": {"batch_size": 16, "steps": 1000, "lr": 0.002, "warmup_steps": 20,
            "ema_decay": 0.99, "log_every": 100, "checkpoint_every": 1000, "sample_every": 0,
            "device": "cpu"},
  "sample": {"sampler": "ddim", "steps": 20}
})";
  const auto trained = run_ddpm("train --threads 2 --config " +
                                (temp.path() / "config.json").string() + " --out " +
                                (temp.path() / "run").string() + " --data " + data);
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_CONTAINS(trained.output, "3 classes");
  EXPECT_CONTAINS(trained.output, "dark: 16, grey: 16, light: 16");

  std::map<double, double> accuracy;
  for (const double w : {1.0, 3.0}) {
    const fs::path out = temp.path() / ("w" + std::to_string(int(w)));
    const auto sampled = run_ddpm("sample --threads 2 --checkpoint " +
                                  (temp.path() / "run").string() + " --out " + out.string() +
                                  " --num 30 --guidance " + std::to_string(w) + " --device cpu" +
                                  " --grid " + (out / "grid.png").string());
    ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
    int correct = 0;
    for (int k = 0; k < 30; ++k) {
      const int64_t asked = k / 10;  // classes in turn: 10 each
      char name[32];
      std::snprintf(name, sizeof name, "sample_%05d.png", k);
      const fs::path file = out / names[asked] / name;
      ASSERT_TRUE(fs::exists(file)) << file;
      const auto text = read_png_text(file);
      EXPECT_EQ(text.at("class"), names[asked]);
      EXPECT_EQ(text.at("guidance"), nlohmann::json(w).dump());
      correct += nearest_level(file, levels) == asked;
    }
    accuracy[w] = correct / 30.0;
    const Image grid = read_image(out / "grid.png", 1);
    EXPECT_EQ(grid.height, 3 * 8 + 2 * 2);  // one row per class
    EXPECT_EQ(grid.width, 10 * 8 + 9 * 2);
  }
  std::printf("grey-level classes: accuracy %.3f at W = 1, %.3f at W = 3 (chance 0.333)\n",
              accuracy[1.0], accuracy[3.0]);
  // Measured here: 0.73 at W = 1 and 1.0 at W = 3. Chance is 1/3: 18 or more of 30 right by
  // chance has a probability below 1e-3.
  EXPECT_GE(accuracy[1.0], 0.6);
  EXPECT_GE(accuracy[3.0], accuracy[1.0]);
  EXPECT_GE(accuracy[3.0], 0.9);

  // One class, by name: a flat folder.
  const auto dark = run_ddpm("sample --checkpoint " + (temp.path() / "run").string() +
                             " --out " + (temp.path() / "dark").string() +
                             " --num 2 --class dark --device cpu");
  ASSERT_EQ(dark.exit_code, 0) << dark.output;
  EXPECT_TRUE(fs::exists(temp.path() / "dark" / "sample_00001.png"));
  const auto unknown = run_ddpm("sample --checkpoint " + (temp.path() / "run").string() +
                                " --out " + (temp.path() / "x").string() + " --class shoe");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_CONTAINS(unknown.output, "0 dark, 1 grey, 2 light");
  const auto negative = run_ddpm("sample --checkpoint " + (temp.path() / "run").string() +
                                 " --out " + (temp.path() / "x").string() + " --guidance=-1");
  EXPECT_NE(negative.exit_code, 0);
  EXPECT_CONTAINS(negative.output, "sample.guidance");

  // Per-class evaluation: each class folder of the samples against the data's.
  testing::write_feature_net(temp.path() / "net.pt", testing::kBlockMeansForward);
  const auto evaluated = run_ddpm("eval --real " + data + " --generated " +
                                  (temp.path() / "w3").string() + " --features " +
                                  (temp.path() / "net.pt").string() +
                                  " --metrics fid --per-class --json " +
                                  (temp.path() / "eval.json").string());
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  const auto result = nlohmann::json::parse(testing::read_text(temp.path() / "eval.json"));
  ASSERT_EQ(result["per_class"].size(), 3u);
  EXPECT_EQ(result["per_class"]["grey"]["num_generated"], 10);
  EXPECT_EQ(result["per_class"]["grey"]["num_real"], 16);
  EXPECT_TRUE(result["per_class"]["light"]["fid"].is_number());

  // Resuming on a folder with other classes is refused.
  fs::rename(temp.path() / "data" / "light", temp.path() / "data" / "white");
  const auto resumed = run_ddpm("train --out " + (temp.path() / "run").string() +
                                " --resume --data " + data + " --set train.steps=1001");
  EXPECT_NE(resumed.exit_code, 0);
  EXPECT_CONTAINS(resumed.output, "[dark, grey, light]");
  EXPECT_CONTAINS(resumed.output, "[dark, grey, white]");
}

}  // namespace
}  // namespace ddpm
