// `ddpm nll`: the variational bound of a folder of images in bits per dimension
// (Pipeline::likelihood, diffusion/likelihood.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/atomic_file.h"
#include "base/log.h"
#include "commands.h"
#include "common.h"
#include "ddpm/ddpm.h"
#include "ddpm/error.h"
#include "edit_files.h"
#include "progress.h"

namespace ddpm::cli {
namespace {

namespace fs = std::filesystem;

// Images decoded per Pipeline::likelihood call (bounds the memory of a large folder).
constexpr size_t kFilesPerRead = 1000;

struct Summary {
  double mean = 0.0, standard_error = 0.0;
};

// The mean over the images, with its standard error: the spread of the images' values over
// sqrt(N) (which holds the estimate's own noise too when each image's value is an estimate).
Summary summarise(const std::vector<double>& values) {
  Summary summary;
  const double n = static_cast<double>(values.size());
  for (const double value : values) summary.mean += value / n;
  if (values.size() < 2) return summary;
  double squares = 0.0;
  for (const double value : values) squares += (value - summary.mean) * (value - summary.mean);
  summary.standard_error = std::sqrt(squares / (n - 1.0) / n);
  return summary;
}

std::string format(double value, int digits = 4) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

LikelihoodRequest request_of(const cxxopts::ParseResult& arguments) {
  LikelihoodRequest request;
  request.timesteps = arguments["timesteps"].as<int>();
  request.seed = arguments["seed"].as<uint64_t>();
  if (arguments.count("batch")) request.batch_size = arguments["batch"].as<int64_t>();
  if (arguments.count("variance")) request.variance = arguments["variance"].as<std::string>();
  if (request.timesteps < 0 || request.timesteps == 1) {
    throw Error(ErrorKind::usage, "--timesteps must be 0 (every term) or 2 .. T (an estimate: "
                                  "the decoder term and at least one KL term), got " +
                                      std::to_string(request.timesteps));
  }
  if (request.batch_size < 0) throw Error(ErrorKind::usage, "--batch must be >= 1");
  return request;
}

// The first --num files of --data (all without --num).
std::vector<std::string> data_files(const cxxopts::ParseResult& arguments) {
  std::vector<std::string> files = image_files(arguments["data"].as<std::string>(), "--data");
  if (arguments.count("num")) {
    const int64_t num = arguments["num"].as<int64_t>();
    if (num < 1) throw Error(ErrorKind::usage, "--num must be >= 1, got " + std::to_string(num));
    if (static_cast<size_t>(num) < files.size()) files.resize(static_cast<size_t>(num));
  }
  return files;
}

// Every image's bound, read and evaluated kFilesPerRead files at a time.
LikelihoodReport evaluate_files(const Pipeline& pipeline, const std::vector<std::string>& files,
                                LikelihoodRequest request) {
  ProgressDisplay display("evaluation", 1000);
  const auto start = std::chrono::steady_clock::now();
  LikelihoodReport all;
  const int64_t per_image = request.timesteps > 0 ? request.timesteps : pipeline.timesteps();
  const int64_t total = static_cast<int64_t>(files.size()) * per_image;
  for (size_t first = 0; first < files.size(); first += kFilesPerRead) {
    const size_t end = std::min(files.size(), first + kFilesPerRead);
    EditInputs inputs =
        pipeline.read_inputs(std::vector<std::string>(files.begin() + first, files.begin() + end));
    if (first == 0) {
      for (const std::string& note : inputs.notes) log::info(note);
    }
    request.images = std::move(inputs.images);
    request.first_image = static_cast<int64_t>(first);
    const int64_t done_before = static_cast<int64_t>(first) * per_image;
    request.on_progress = [&](int64_t done, int64_t) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      display.update(done_before + done, total, elapsed, "");
    };
    LikelihoodReport part = pipeline.likelihood(request);
    const auto append = [](std::vector<double>& to, const std::vector<double>& from) {
      to.insert(to.end(), from.begin(), from.end());
    };
    append(all.bits_per_dim, part.bits_per_dim);
    append(all.prior, part.prior);
    append(all.decoder, part.decoder);
    if (all.timestep_sums.empty()) {
      all.timestep_sums = part.timestep_sums;
    } else {
      for (size_t t = 0; t < part.timestep_sums.size(); ++t) {
        all.timestep_sums[t] += part.timestep_sums[t];
      }
    }
    all.variance = part.variance;
  }
  display.finish();
  return all;
}

nlohmann::json report_json(const LikelihoodReport& report, const std::vector<std::string>& files,
                           const cxxopts::ParseResult& arguments, double seconds) {
  const Summary bound = summarise(report.bits_per_dim);
  const int timesteps = arguments["timesteps"].as<int>();
  nlohmann::json result = {
      {"checkpoint", arguments["checkpoint"].as<std::string>()},
      {"data", arguments["data"].as<std::string>()},
      {"images", files.size()},
      {"timesteps", timesteps == 0 ? nlohmann::json("all") : nlohmann::json(timesteps)},
      {"variance", report.variance},
      {"seed", arguments["seed"].as<uint64_t>()},
      {"bits_per_dim", bound.mean},
      {"standard_error", bound.standard_error},
      {"prior_bits_per_dim", summarise(report.prior).mean},
      {"decoder_bits_per_dim", summarise(report.decoder).mean},
      {"seconds", seconds}};
  nlohmann::json images = nlohmann::json::array();
  for (size_t k = 0; k < files.size(); ++k) {
    images.push_back({{"file", files[k]}, {"bits_per_dim", report.bits_per_dim[k]}});
  }
  result["per_image"] = std::move(images);
  return result;
}

// t,mean_bits_per_dim: each term's mean over the images (t = 0 the decoder).
std::string per_timestep_csv(const LikelihoodReport& report, size_t images) {
  std::ostringstream csv;
  csv << "t,mean_bits_per_dim\n";
  char line[64];
  for (size_t t = 0; t < report.timestep_sums.size(); ++t) {
    std::snprintf(line, sizeof line, "%zu,%.9g\n", t, report.timestep_sums[t] / double(images));
    csv << line;
  }
  return csv.str();
}

}  // namespace

int run_nll(int argc, char** argv) {
  cxxopts::Options options(
      "ddpm nll",
      "The variational bound of images in bits per dimension (DDPM's L_vlb: the prior term, "
      "every KL term and the discretized decoder term), per image and their mean with its "
      "standard error. Images are read as training data is, without the random flip. It costs "
      "T network evaluations per image; --timesteps K gives an unbiased estimate from K: the "
      "decoder term, and one timestep drawn in each of K - 1 strata of 1 .. T-1, narrow at "
      "small t where the terms are large, weighted by its stratum's width.");
  options.add_options()("checkpoint",
                        "checkpoint file, run directory (its latest), diffusers model folder or "
                        "ddpm compile package (.pt2)",
                        cxxopts::value<std::string>())(
      "data", "an image file or a folder of them (sorted)", cxxopts::value<std::string>())(
      "num", "the first N images only", cxxopts::value<int64_t>())(
      "batch", "images per network call (default: the model's sample.batch_size)",
      cxxopts::value<int64_t>())(
      "seed", "the noise draws' seed", cxxopts::value<uint64_t>()->default_value("0"))(
      "timesteps", "0: every term; K (2 .. T): an unbiased estimate from K evaluations per image",
      cxxopts::value<int>()->default_value("0"))(
      "variance", "fixed_large, fixed_small or learned (default: the model's)",
      cxxopts::value<std::string>())(
      "json", "write the result (and every image's value) to this JSON file",
      cxxopts::value<std::string>())(
      "per-timestep", "write each term's mean over the images to this CSV file (every term only)",
      cxxopts::value<std::string>())(
      "device", "auto, cpu, cuda or cuda:N", cxxopts::value<std::string>()->default_value("auto"))(
      "overwrite", "replace existing output files");
  const auto parsed = parse_command(options, argc, argv, false);
  if (!parsed) return 0;
  const cxxopts::ParseResult& arguments = *parsed;
  if (!arguments.count("checkpoint") || !arguments.count("data")) {
    throw Error(ErrorKind::usage, "ddpm nll needs --checkpoint and --data");
  }
  const LikelihoodRequest request = request_of(arguments);
  if (arguments.count("per-timestep") && request.timesteps != 0) {
    throw Error(ErrorKind::usage, "--per-timestep needs every term (--timesteps 0)");
  }
  const bool overwrite = arguments.count("overwrite") > 0;
  for (const char* flag : {"json", "per-timestep"}) {
    if (arguments.count(flag)) refuse_existing(arguments[flag].as<std::string>(), overwrite);
  }
  const std::vector<std::string> files = data_files(arguments);
  const Pipeline pipeline = Pipeline::load(arguments["checkpoint"].as<std::string>(),
                                           arguments["device"].as<std::string>());
  log::info("bits/dim of " + std::to_string(files.size()) + " images: " +
            (request.timesteps == 0 ? "every term (" + std::to_string(pipeline.timesteps()) +
                                          " evaluations per image)"
                                    : "an unbiased estimate from " +
                                          std::to_string(request.timesteps) +
                                          " evaluations per image"));
  const auto start = std::chrono::steady_clock::now();
  const LikelihoodReport report = evaluate_files(pipeline, files, request);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const Summary bound = summarise(report.bits_per_dim);
  std::printf("bits/dim %s +- %s (standard error, %zu images, %s, variance %s)\n",
              format(bound.mean).c_str(), format(bound.standard_error).c_str(), files.size(),
              request.timesteps == 0 ? "every term"
                                     : ("estimate from " + std::to_string(request.timesteps) +
                                        " evaluations each").c_str(),
              report.variance.c_str());
  std::printf("prior term %s bits/dim, decoder term %s bits/dim\n",
              format(summarise(report.prior).mean, 6).c_str(),
              format(summarise(report.decoder).mean).c_str());
  std::fflush(stdout);
  if (arguments.count("json")) {
    const fs::path file = arguments["json"].as<std::string>();
    make_folder_of(file);
    write_file_atomically(file, report_json(report, files, arguments, seconds).dump(2) + "\n");
  }
  if (arguments.count("per-timestep")) {
    const fs::path file = arguments["per-timestep"].as<std::string>();
    make_folder_of(file);
    write_file_atomically(file, per_timestep_csv(report, files.size()));
  }
  return 0;
}

}  // namespace ddpm::cli
