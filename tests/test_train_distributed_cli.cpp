// `ddpm train` as several processes on localhost (Gloo), launched the way torchrun launches
// them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): the result against one
// process on the same global batch, resuming at another number of processes, a stop asked of
// one rank, a killed rank, and bad launcher variables; ddpm distill the same way.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <chrono>
#include <fstream>

#include "formats/checkpoint.h"
#include "test_support.h"

namespace ddpm {
namespace {

using testing::read_text;
using testing::run_ddpm;
using testing::TempDir;

class DistributedTraining : public ::testing::Test {
 protected:
  DistributedTraining() : temp_("cli_distributed") {
    testing::write_image_folder(temp_.path() / "images", 24, 8, 8);
    std::ofstream(path("config.json")) << testing::small_train_config(temp_.path() / "images", 4);
  }
  std::filesystem::path path(const std::string& name) const { return temp_.path() / name; }

  // `ddpm train` arguments shared by every run: the small config without dropout (a single
  // process draws one dropout stream, two ranks two), one thread per process.
  std::string train_args(const std::string& run, int steps) const {
    return "train --config " + path("config.json").string() + " --out " + path(run).string() +
           " --threads 1 --set model.dropout=0 --set train.steps=" + std::to_string(steps) + " ";
  }

  // The shell lines that start rank `rank` of `world` in the background, logging to
  // log_<tag><rank>.txt and writing its exit code to exit_<tag><rank>.txt; `timeout` bounds it.
  // With a `signal`, it is sent to the rank once the run's metrics.jsonl has a line.
  std::string rank_command(int rank, int world, int port, const std::string& arguments,
                           const std::string& tag, const std::string& signal = "") const {
    const std::string suffix = tag + std::to_string(rank) + ".txt";
    const std::string pid_file = path("pid_" + suffix).string();
    const std::string start =
        "RANK=" + std::to_string(rank) + " WORLD_SIZE=" + std::to_string(world) +
        " LOCAL_RANK=" + std::to_string(rank) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
        std::to_string(port) + " timeout -s KILL 300 sh -c 'echo $$ > " + pid_file + "; exec " +
        DDPM_BINARY + " " + arguments + "' > " + path("log_" + suffix).string() + " 2>&1";
    const std::string record = "echo $? > " + path("exit_" + suffix).string();
    if (signal.empty()) return "(" + start + "; " + record + ") & ";
    return "(" + start + " & pid=$!; for i in $(seq 2400); do [ -s " +
           (path("run") / "metrics.jsonl").string() + " ] && break; sleep 0.05; done; kill -" +
           signal + " $(cat " + pid_file + "); wait $pid; " + record + ") & ";
  }

  // Runs `world` ranks to the end; returns each rank's exit code (-1 when unknown).
  std::vector<int> run_ranks(int world, const std::string& arguments, const std::string& tag) {
    const int port = testing::free_port();
    std::string script;
    for (int rank = 0; rank < world; ++rank) script += rank_command(rank, world, port, arguments, tag);
    script += "wait";
    EXPECT_EQ(std::system(script.c_str()), 0);
    return exit_codes(world, tag);
  }

  std::vector<int> exit_codes(int world, const std::string& tag) const {
    std::vector<int> codes;
    for (int rank = 0; rank < world; ++rank) {
      const std::string text = read_text(path("exit_" + tag + std::to_string(rank) + ".txt"));
      codes.push_back(text.empty() ? -1 : std::stoi(text));
    }
    return codes;
  }
  std::string log(const std::string& tag, int rank) const {
    return read_text(path("log_" + tag + std::to_string(rank) + ".txt"));
  }

  TempDir temp_;
};

// Largest absolute difference between two checkpoints' model weights.
double weight_difference(const std::filesystem::path& a, const std::filesystem::path& b) {
  const TrainingState first = load_checkpoint(resolve_checkpoint(a));
  const TrainingState second = load_checkpoint(resolve_checkpoint(b));
  EXPECT_EQ(first.step, second.step);
  EXPECT_EQ(first.model.size(), second.model.size());
  double largest = 0.0;
  for (const auto& [name, tensor] : first.model) {
    largest = std::max(largest, (tensor - second.model.at(name)).abs().max().item<double>());
  }
  return largest;
}

// The runs' metrics.jsonl lines agree: the loss (the mean over every rank's part of the batch)
// and the gradient norm (of the averaged gradient) to 1e-5, relative; `lines` of them.
void expect_same_metrics(const std::filesystem::path& run, const std::filesystem::path& reference,
                         int lines) {
  std::ifstream metrics(run / "metrics.jsonl");
  std::ifstream expected(reference / "metrics.jsonl");
  std::string line, reference_line;
  int count = 0;
  while (std::getline(metrics, line) && std::getline(expected, reference_line)) {
    ++count;
    const auto ours = nlohmann::json::parse(line), theirs = nlohmann::json::parse(reference_line);
    for (const char* key : {"loss", "grad_norm"}) {
      EXPECT_NEAR(ours[key].get<double>(), theirs[key].get<double>(),
                  1e-5 * theirs[key].get<double>())
          << key << " at line " << count;
    }
    EXPECT_EQ(ours.value("round", 0), theirs.value("round", 0));
  }
  EXPECT_EQ(count, lines);
}

TEST_F(DistributedTraining, TwoRanksMatchOneProcessAndResumeAtEitherSize) {
  // Two ranks and one process, 4 steps each on the same global batch of 4.
  ASSERT_EQ(run_ranks(2, train_args("two", 4), "two"), (std::vector<int>{0, 0}))
      << log("two", 0) << log("two", 1);
  const auto alone = run_ddpm(train_args("one", 4));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  // Tolerance: float summation order differs (gradients averaged over ranks); weights are
  // ~0.1 and Adam moves them by ~lr = 1e-3 per step, so a wrong gradient would show.
  EXPECT_LT(weight_difference(path("two"), path("one")), 1e-5);

  // Rank 0 alone wrote the run directory and logged progress; rank 1 logged nothing.
  EXPECT_CONTAINS(log("two", 0), "2 processes (gloo, launched by torchrun), global batch 4 = 2 x 2");
  EXPECT_EQ(log("two", 1), "");
  expect_same_metrics(path("two"), path("one"), 4);

  // Resume the two-rank run as one process and the one-process run as two ranks, to step 6.
  const auto resumed_alone = run_ddpm(train_args("two", 6) + "--resume");
  ASSERT_EQ(resumed_alone.exit_code, 0) << resumed_alone.output;
  ASSERT_EQ(run_ranks(2, train_args("one", 6) + "--resume", "resume"), (std::vector<int>{0, 0}))
      << log("resume", 0) << log("resume", 1);
  EXPECT_LT(weight_difference(path("two"), path("one")), 1e-5);
}

TEST_F(DistributedTraining, TwoRanksDistilAsOneProcess) {
  const auto teacher = run_ddpm(train_args("teacher", 2));
  ASSERT_EQ(teacher.exit_code, 0) << teacher.output;
  // Two rounds (8 -> 4 -> 2 steps) of 2 steps each, the global batch of 4 split over the ranks.
  const std::string distill = "distill --teacher " + path("teacher").string() + " --data " +
                              path("images").string() +
                              " --threads 1 --set model.dropout=0 --set distill.start_steps=8"
                              " --set distill.end_steps=2 --set distill.steps_per_round=2"
                              " --set train.sample_every=0 --out ";
  ASSERT_EQ(run_ranks(2, distill + path("two").string(), "two"), (std::vector<int>{0, 0}))
      << log("two", 0) << log("two", 1);
  const auto alone = run_ddpm(distill + path("one").string());
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  // The logged losses and gradient norms agree to float rounding (a rank with other targets,
  // timesteps or noise would be far off) ...
  expect_same_metrics(path("two"), path("one"), 4);
  // ... and so do the weights, to 1e-4: Adam starts afresh every round, and its first steps
  // move each weight by about lr (1e-3) whatever the size of its gradient, so rounding in the
  // tiniest gradients shows as a few percent of lr (measured 3.6e-5).
  EXPECT_LT(weight_difference(path("two"), path("one")), 1e-4);
  EXPECT_LT(weight_difference(path("two") / "rounds" / "steps_004",
                              path("one") / "rounds" / "steps_004"), 1e-4);
  EXPECT_EQ(log("two", 1), "");  // rank 0 alone speaks and writes
}

TEST_F(DistributedTraining, LossAwareRanksKeepTheOneProcessLossHistory) {
  // Importance-sampled timesteps (T = 4, so the resampler warms up within the run): every rank
  // records the whole global batch's losses, so two ranks keep the history one process keeps
  // and draw the same timesteps.
  const std::string improved =
      "--set model.learn_variance=true --set train.loss=hybrid --set "
      "train.timestep_sampling=loss_aware --set diffusion.timesteps=4 --set sample.sampler=ddpm "
      "--set sample.steps=4 ";
  ASSERT_EQ(run_ranks(2, train_args("two", 20) + improved, "two"), (std::vector<int>{0, 0}))
      << log("two", 0) << log("two", 1);
  const auto alone = run_ddpm(train_args("one", 20) + improved);
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const TrainingState two = load_checkpoint(resolve_checkpoint(path("two")));
  const TrainingState one = load_checkpoint(resolve_checkpoint(path("one")));
  ASSERT_FALSE(two.timestep_sampler.empty());
  EXPECT_TRUE(torch::equal(two.timestep_sampler.at("counts"), one.timestep_sampler.at("counts")));
  EXPECT_TRUE(torch::all(one.timestep_sampler.at("counts") == 10).item<bool>())
      << "the resampler warmed up, so later steps sampled by it";
  EXPECT_TRUE(torch::allclose(two.timestep_sampler.at("history"),
                              one.timestep_sampler.at("history"), 1e-4, 1e-6));
  EXPECT_LT(weight_difference(path("two"), path("one")), 1e-4);
}

TEST_F(DistributedTraining, AStopAskedOfOneRankStopsBothAtTheSameStep) {
  // Rank 1 alone gets SIGTERM (torchrun would signal every rank); both must finish the same
  // step, rank 0 must write that step's checkpoint, and both exit 130.
  const int port = testing::free_port();
  const std::string arguments = train_args("run", 1000000) +
                                "--set train.checkpoint_every=1000000";
  const std::string script = rank_command(0, 2, port, arguments, "r") +
                             rank_command(1, 2, port, arguments, "r", "TERM") + "wait";
  ASSERT_EQ(std::system(script.c_str()), 0);
  EXPECT_EQ(exit_codes(2, "r"), (std::vector<int>{130, 130})) << log("r", 0) << log("r", 1);
  EXPECT_CONTAINS(log("r", 0), "--resume");
  const TrainingState state = load_checkpoint(resolve_checkpoint(path("run")));
  EXPECT_GE(state.step, 1);
  // The last logged step is the checkpoint's: both ranks stopped after it.
  std::ifstream metrics(path("run") / "metrics.jsonl");
  std::string line, last;
  while (std::getline(metrics, line)) last = line;
  EXPECT_EQ(nlohmann::json::parse(last)["step"].get<int64_t>(), state.step);
}

TEST_F(DistributedTraining, AKilledRankEndsTheOtherWithAnErrorInBoundedTime) {
  const int port = testing::free_port();
  const std::string arguments = train_args("run", 1000000) +
                                "--set train.checkpoint_every=1000000 --set train.dist_timeout_s=60";
  const auto start = std::chrono::steady_clock::now();
  const std::string script = rank_command(0, 2, port, arguments, "k") +
                             rank_command(1, 2, port, arguments, "k", "KILL") + "wait";
  ASSERT_EQ(std::system(script.c_str()), 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto codes = exit_codes(2, "k");
  EXPECT_EQ(codes[1], 137);  // killed
  EXPECT_EQ(codes[0], 1) << log("k", 0);  // an error, not the test's KILL after 300 s (137)
  EXPECT_CONTAINS(log("k", 0), "rank 0 of 2");
  EXPECT_CONTAINS(log("k", 0), "--resume");
  // Gloo sees the closed connection at once; the 60 s collective timeout is the upper bound.
  EXPECT_LT(seconds, 90.0);
}

TEST_F(DistributedTraining, BadLauncherVariablesAndAnUnevenBatchAreUsageErrors) {
  // Both are found before any rendezvous, so a lone rank 0 fails at once.
  const std::string binary = DDPM_BINARY;
  const auto run = [&](const std::string& env, const std::string& log) {
    const int status = std::system((env + " timeout -s KILL 120 " + binary + " " +
                                    train_args("never", 1) + " > " + path(log).string() + " 2>&1")
                                       .c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(run("RANK=0 WORLD_SIZE=2", "missing.txt"), 2);
  EXPECT_CONTAINS(read_text(path("missing.txt")), "MASTER_ADDR is not set");
  EXPECT_EQ(run("RANK=0 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=" +
                    std::to_string(testing::free_port()),
                "uneven.txt"),
            2);
  EXPECT_CONTAINS(read_text(path("uneven.txt")), "train.batch_size");
  EXPECT_CONTAINS(read_text(path("uneven.txt")), "multiple of the number of processes");
  EXPECT_FALSE(std::filesystem::exists(path("never")));
}

}  // namespace
}  // namespace ddpm
