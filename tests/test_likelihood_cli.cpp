// ddpm nll on the shipped Fashion-MNIST model: the JSON and CSV it writes, its agreement with
// Pipeline::likelihood, and the refusals of impossible requests before any work.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ddpm/ddpm.h"
#include "formats/image_io.h"
#include "test_support.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;
using testing::run_ddpm;

const std::string kModel = std::string(DDPM_SOURCE_DIR) + "/data/models/fashion_mnist_cpu.pt";

class LikelihoodCli : public ::testing::Test {
 protected:
  LikelihoodCli() : temp_("likelihood_cli") {
    fs::create_directories(images());
    for (int k = 0; k < 2; ++k) {
      Image image{28, 28, 1, std::vector<uint8_t>(28 * 28)};
      for (int i = 0; i < 28 * 28; ++i) image.pixels[i] = static_cast<uint8_t>((i * (7 + k)) % 256);
      write_png(images() / ("img_" + std::to_string(k) + ".png"), image);
    }
  }
  fs::path images() const { return temp_.path() / "images"; }
  fs::path file(const std::string& name) const { return temp_.path() / name; }
  std::string base() const {
    return "nll --checkpoint " + kModel + " --data " + images().string() + " --device cpu ";
  }
  testing::TempDir temp_;
};

TEST_F(LikelihoodCli, EstimateWritesItsJsonAndMatchesTheApi) {
  const auto result = run_ddpm(base() + "--timesteps 6 --seed 2 --json " + file("nll.json").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "bits/dim");
  EXPECT_CONTAINS(result.output, "estimate from 6 evaluations");
  const auto report = nlohmann::json::parse(testing::read_text(file("nll.json")));
  EXPECT_EQ(report["images"], 2);
  EXPECT_EQ(report["timesteps"], 6);
  ASSERT_EQ(report["per_image"].size(), 2u);
  for (const auto& image : report["per_image"]) EXPECT_GT(image["bits_per_dim"].get<double>(), 0.0);
  EXPECT_GT(report["standard_error"].get<double>(), 0.0);
  // The API on the same images and seed gives the same values.
  const Pipeline pipeline = Pipeline::load(kModel, "cpu");
  EditInputs inputs = pipeline.read_inputs(
      {(images() / "img_0.png").string(), (images() / "img_1.png").string()});
  LikelihoodRequest request;
  request.images = std::move(inputs.images);
  request.timesteps = 6;
  request.seed = 2;
  const LikelihoodReport api = pipeline.likelihood(request);
  ASSERT_EQ(api.bits_per_dim.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    EXPECT_DOUBLE_EQ(api.bits_per_dim[k], report["per_image"][k]["bits_per_dim"].get<double>());
  }
  // The file is not replaced without --overwrite.
  const auto again = run_ddpm(base() + "--timesteps 6 --json " + file("nll.json").string());
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_CONTAINS(again.output, "--overwrite");
}

TEST_F(LikelihoodCli, EveryTermSumsToTheBound) {
  const auto result =
      run_ddpm(base() + "--num 1 --batch 1 --json " + file("all.json").string() +
               " --per-timestep " + file("terms.csv").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto report = nlohmann::json::parse(testing::read_text(file("all.json")));
  EXPECT_EQ(report["timesteps"], "all");
  EXPECT_EQ(report["images"], 1);
  std::istringstream csv(testing::read_text(file("terms.csv")));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "t,mean_bits_per_dim");
  double sum = 0.0, decoder = NAN;
  int rows = 0;
  while (std::getline(csv, line)) {
    const double value = std::stod(line.substr(line.find(',') + 1));
    if (rows == 0) decoder = value;
    if (rows > 0) {
      EXPECT_GE(value, 0.0) << "KL term at t = " << rows;
    }
    sum += value;
    ++rows;
  }
  EXPECT_EQ(rows, 1000);
  EXPECT_NEAR(decoder, report["decoder_bits_per_dim"].get<double>(), 1e-7);  // %.9g in the CSV
  EXPECT_NEAR(sum + report["prior_bits_per_dim"].get<double>(),
              report["bits_per_dim"].get<double>(), 1e-6);
}

TEST_F(LikelihoodCli, ImpossibleRequestsAreRefused) {
  const auto learned = run_ddpm(base() + "--timesteps 2 --variance learned");
  EXPECT_EQ(learned.exit_code, 2) << learned.output;
  EXPECT_CONTAINS(learned.output, "model.learn_variance");
  const auto unknown = run_ddpm(base() + "--timesteps 2 --variance fixed_larg");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_CONTAINS(unknown.output, "fixed_large");
  const auto csv = run_ddpm(base() + "--timesteps 2 --per-timestep " + file("t.csv").string());
  EXPECT_EQ(csv.exit_code, 2) << csv.output;
  EXPECT_CONTAINS(csv.output, "--per-timestep needs every term");
  EXPECT_FALSE(fs::exists(file("t.csv")));
  const auto missing = run_ddpm("nll --checkpoint " + kModel + " --data " +
                                file("nowhere").string() + " --timesteps 2");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_CONTAINS(missing.output, "--data");
  for (const char* count : {"-1", "1", "1001"}) {
    const auto wrong = run_ddpm(base() + "--timesteps " + count);
    EXPECT_EQ(wrong.exit_code, 2) << wrong.output;
    EXPECT_CONTAINS(wrong.output, "--timesteps must be 0");
  }
}

}  // namespace
}  // namespace ddpm
