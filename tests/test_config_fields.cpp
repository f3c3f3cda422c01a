// The typed config's two tables: the closed choices (choices.h, sampler_kind.h), each name with
// its enum value, and the field lists of config_fields.h, which reading, writing and --set share.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/config_fields.h"
#include "config/config_json.h"
#include "ddpm/error.h"
#include "interop/sampling_model.h"
#include "test_support.h"

namespace ddpm {
namespace {

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

// Every value of a choice against the name the docs give it, both ways, and no other name.
template <typename Choice>
void expect_names(const std::vector<std::pair<Choice, std::string>>& documented) {
  ASSERT_EQ(choice_names<Choice>().size(), documented.size());
  for (const auto& [value, name] : documented) {
    EXPECT_EQ(choice_name(value), name);
    EXPECT_EQ(choice_from_name<Choice>(name, "key"), value) << name;
  }
}

TEST(ConfigChoices, EveryEnumValueHasTheNameTheDocsGiveIt) {
  expect_names<LabelSource>({{LabelSource::none, "none"}, {LabelSource::folders, "folders"}});
  expect_names<TimeEmbeddingOrder>(
      {{TimeEmbeddingOrder::sin_cos, "sin_cos"}, {TimeEmbeddingOrder::cos_sin, "cos_sin"}});
  expect_names<DownsamplePadding>({{DownsamplePadding::asymmetric, "asymmetric"},
                                   {DownsamplePadding::symmetric, "symmetric"}});
  expect_names<Schedule>({{Schedule::linear, "linear"},
                          {Schedule::cosine, "cosine"},
                          {Schedule::quadratic, "quadratic"},
                          {Schedule::sigmoid, "sigmoid"},
                          {Schedule::custom, "custom"}});
  expect_names<Prediction>(
      {{Prediction::eps, "eps"}, {Prediction::x0, "x0"}, {Prediction::v, "v"}});
  expect_names<LossWeighting>(
      {{LossWeighting::none, "none"}, {LossWeighting::min_snr, "min_snr"}});
  expect_names<LossKind>(
      {{LossKind::simple, "simple"}, {LossKind::hybrid, "hybrid"}, {LossKind::vlb, "vlb"}});
  expect_names<TimestepSampling>({{TimestepSampling::uniform, "uniform"},
                                  {TimestepSampling::loss_aware, "loss_aware"}});
  expect_names<OnNonfinite>({{OnNonfinite::stop, "stop"}, {OnNonfinite::skip, "skip"}});
  expect_names<Variance>({{Variance::fixed_large, "fixed_large"},
                          {Variance::fixed_small, "fixed_small"},
                          {Variance::learned, "learned"}});
  expect_names<Spacing>({{Spacing::uniform, "uniform"},
                         {Spacing::quadratic, "quadratic"},
                         {Spacing::leading, "leading"},
                         {Spacing::trailing, "trailing"},
                         {Spacing::linspace, "linspace"},
                         {Spacing::karras, "karras"}});
  expect_names<Precision>(
      {{Precision::fp32, "fp32"}, {Precision::bf16, "bf16"}, {Precision::fp16, "fp16"}});
  expect_names<SamplerKind>({{SamplerKind::ddpm, "ddpm"},
                             {SamplerKind::ddim, "ddim"},
                             {SamplerKind::euler, "euler"},
                             {SamplerKind::euler_ancestral, "euler_ancestral"},
                             {SamplerKind::heun, "heun"},
                             {SamplerKind::dpmpp_2m, "dpmpp_2m"},
                             {SamplerKind::dpmpp_2m_sde, "dpmpp_2m_sde"}});
  for (const SamplerInfo& info : all_samplers()) EXPECT_EQ(choice_name(info.kind), info.name);
}

TEST(ConfigChoices, AnUnknownNameNamesTheKeyAndSuggestsTheClosest) {
  const std::string message =
      testing::error_of([] { choice_from_name<Schedule>("cosin", "diffusion.schedule"); });
  EXPECT_CONTAINS(message, "diffusion.schedule");
  EXPECT_CONTAINS(message, "did you mean 'cosine'?");
  EXPECT_CONTAINS(testing::error_of([] { choice_from_name<Spacing>("exponential", "k"); }),
                  "karras");  // no close name: the whole list
}

// A config with every field away from its default, so that a field missing from one of the
// field lists (or read into the wrong field) cannot round-trip.
Config every_field_changed() {
  Config c;
  c.data = {"/data", 16, 24, 1, true, 3, 100, 1000, 4096, LabelSource::folders, {"a", "b"}};
  c.model = {64, {1, 2}, 1, {8}, 2, 0, 0.2, 16, 1e-5, TimeEmbeddingOrder::cos_sin, 0.5,
             DownsamplePadding::symmetric, 2, true};
  c.diffusion = {10, Schedule::custom, 2e-4, 0.03, 0.01, 0.9,
                 {0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2}, Prediction::v};
  c.train = {32, 7, 1e-3, 0.8, 0.99, 1e-6, 0.01, 3, 0.5, 0.99, false, 0.5,
             LossWeighting::min_snr, 4.0, LossKind::hybrid, 0.01, TimestepSampling::loss_aware,
             2, 9, 2, 3, 4, false, 5, "cpu", Precision::bf16, 1024.0, 3.0, 0.25, 10, 2.0,
             OnNonfinite::skip, 60, 6, 8, "/real", "/net.pt", 12, 0.2};
  c.sample = {SamplerKind::ddim, 5, 0.5, Variance::fixed_small, Spacing::trailing, false, 9, 3,
              11, 2.5, Precision::fp16, 4, 3};
  // start_steps stays 0 (a distillation asks more of the other sections; test_distillation.cpp
  // round-trips one).
  c.distill = {0, 2, 3, DistillWeighting::snr_plus_one, 2.0};
  return c;
}

TEST(ConfigFields, EveryFieldIsWrittenAndReadBack) {
  const Config config = every_field_changed();
  validate(config);
  const nlohmann::json written = config_to_json(config);
  EXPECT_EQ(config_from_json(written), config);
  // Each section lists each key once, and the writer and the reader agree on the names.
  size_t keys = 0;
  for (const auto& section : written.items()) keys += section.value().size();
  EXPECT_EQ(keys, 10u + 14u + 8u + 39u + 13u + 5u);
  EXPECT_EQ(written["data"]["image_size"], nlohmann::json::array({16, 24}));
  EXPECT_EQ(written["sample"]["sampler"], "ddim");
  EXPECT_EQ(written["train"]["precision"], "bf16");
}

TEST(ConfigFields, TypedOverridesGiveWhatTheJsonOnesGive) {
  const std::vector<std::string> assignments = {
      "train.lr=1e-4",          "model.channel_mult=[1,2,2]", "diffusion.schedule=cosine",
      "data.image_size=[16,24]", "sample.sampler=dpmpp_2m",    "sample.spacing=\"karras\"",
      "sample.steps=20",        "train.on_nonfinite=skip",    "data.labels=folders",
      "train.seed=18446744073709551615"};
  Config typed;
  for (const std::string& assignment : assignments) apply_override(typed, assignment);
  validate(typed);
  EXPECT_EQ(typed, default_config(assignments));
  EXPECT_EQ(typed.sample.sampler, SamplerKind::dpmpp_2m);
  EXPECT_EQ(typed.train.seed, 18446744073709551615ull);

  Config config;
  const auto error = [&](const std::string& assignment) {
    return testing::error_of([&] { apply_override(config, assignment); });
  };
  EXPECT_CONTAINS(error("sample.stpes=3"), "did you mean 'steps'?");
  EXPECT_CONTAINS(error("sampel.steps=3"), "did you mean 'sample'?");
  EXPECT_CONTAINS(error("sample.steps=many"), "sample.steps");
  EXPECT_CONTAINS(error("sample.sampler=eulr"), "did you mean 'euler'?");
  EXPECT_CONTAINS(error("sample.steps"), "section.key=value");
  EXPECT_EQ(config, Config{});  // a refused assignment changes nothing
}

TEST(ConfigFields, ASamplerThatCannotTakeTheModelsSpacingFallsBackUnlessAsked) {
  Config model;
  model.sample.sampler = SamplerKind::dpmpp_2m;
  model.sample.spacing = Spacing::karras;
  model.sample.steps = 20;
  const Config ddim = sampling_config(model, {"sample.sampler=ddim"});
  EXPECT_EQ(ddim.sample.spacing, Spacing::uniform);
  const Config typed = sampling_config(
      model, {}, [](SampleConfig& sample) { sample.sampler = SamplerKind::ddpm; });
  EXPECT_EQ(typed.sample.spacing, Spacing::uniform);
  EXPECT_EQ(typed.sample.steps, 20);
  EXPECT_CONTAINS(testing::error_of([&] {
                    sampling_config(model, {"sample.sampler=ddim", "sample.spacing=leading",
                                            "sample.steps=2000"});
                  }),
                  "sample.steps");
  EXPECT_EQ(sampling_config(model, {"sample.sampler=heun"}).sample.spacing, Spacing::karras);
  EXPECT_CONTAINS(testing::error_of([&] {
                    sampling_config(model, {"sample.sampler=ddim", "sample.spacing=karras"});
                  }),
                  "sample.spacing");  // asked for, so refused rather than replaced
}

}  // namespace
}  // namespace ddpm
