// Data-parallel training pieces: reading the launcher's variables, the Gloo process group
// (two ranks as two threads of this process, on localhost), and a data-parallel TrainStep
// against one process training on the combined batch.
#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <map>
#include <thread>

#include "ddpm/error.h"
#include "distributed/data_parallel.h"
#include "distributed/distributed_env.h"
#include "distributed/process_group.h"
#include "test_support.h"
#include "train/train_step.h"

namespace ddpm {
namespace {

using testing::error_of;

EnvLookup fake_env(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    const auto found = values.find(name);
    if (found == values.end()) return std::nullopt;
    return found->second;
  };
}

TEST(DistributedEnv, NoLauncherMeansOneProcess) {
  const DistributedEnv env = read_distributed_env(fake_env({{"HOME", "/root"}}));
  EXPECT_FALSE(env.distributed());
  EXPECT_EQ(env.world_size, 1);
  EXPECT_EQ(env.rank, 0);
  EXPECT_EQ(env.launcher, "none");
}

TEST(DistributedEnv, ReadsTorchrunsVariables) {
  const DistributedEnv env = read_distributed_env(fake_env({{"RANK", "5"},
                                                            {"WORLD_SIZE", "8"},
                                                            {"LOCAL_RANK", "1"},
                                                            {"MASTER_ADDR", "node7"},
                                                            {"MASTER_PORT", "29400"},
                                                            // torchrun inside Slurm: torchrun wins
                                                            {"SLURM_STEP_ID", "0"},
                                                            {"SLURM_PROCID", "0"},
                                                            {"SLURM_NTASKS", "2"}}));
  EXPECT_EQ(env.launcher, "torchrun");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "node7");
  EXPECT_EQ(env.master_port, 29400);
  EXPECT_EQ(env.describe(), "rank 5 of 8 (local 1), master node7:29400, launched by torchrun");
}

TEST(DistributedEnv, ReadsSlurmStepVariablesAndDerivesTheMaster) {
  const DistributedEnv env = read_distributed_env(fake_env({{"SLURM_STEP_ID", "0"},
                                                            {"SLURM_PROCID", "3"},
                                                            {"SLURM_NTASKS", "16"},
                                                            {"SLURM_STEP_NUM_TASKS", "4"},
                                                            {"SLURM_LOCALID", "1"},
                                                            {"SLURM_STEP_NODELIST", "gpu[03-04]"},
                                                            {"SLURM_JOB_ID", "123456"}}));
  EXPECT_EQ(env.launcher, "slurm");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);  // the step's tasks, not the allocation's
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.master_addr, "gpu03");
  EXPECT_EQ(env.master_port, 15000 + 123456 % 20000);

  // MASTER_ADDR / MASTER_PORT override the derived ones.
  const DistributedEnv explicit_master = read_distributed_env(
      fake_env({{"SLURM_STEP_ID", "0"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"},
                {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(explicit_master.master_addr, "10.0.0.1");
  EXPECT_EQ(explicit_master.master_port, 1234);

  // A batch script (no job step) running ddpm directly stays one process.
  EXPECT_FALSE(read_distributed_env(fake_env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"},
                                              {"SLURM_JOB_ID", "9"}}))
                   .distributed());
}

TEST(DistributedEnv, BadVariablesAreUsageErrorsNamingThem) {
  EXPECT_CONTAINS(error_of([] {
                    read_distributed_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}}));
                  }),
                  "MASTER_ADDR");
  EXPECT_CONTAINS(error_of([] {
                    read_distributed_env(fake_env({{"RANK", "2"}, {"WORLD_SIZE", "2"},
                                                   {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}));
                  }),
                  "RANK is 2, outside 0..1");
  EXPECT_CONTAINS(error_of([] {
                    read_distributed_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "two"}}));
                  }),
                  "WORLD_SIZE is 'two', not a whole number");
  EXPECT_CONTAINS(error_of([] {
                    read_distributed_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "2"},
                                                   {"MASTER_ADDR", "h"},
                                                   {"MASTER_PORT", "70000"}}));
                  }),
                  "MASTER_PORT is 70000, outside 1..65535");
  EXPECT_CONTAINS(error_of([] { read_distributed_env(fake_env({{"RANK", "0"}})); }),
                  "WORLD_SIZE is not set");
  try {
    read_distributed_env(fake_env({{"RANK", "x"}, {"WORLD_SIZE", "2"}}));
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(error.exit_code(), 2);
  }
}

TEST(DistributedEnv, FirstHostOfASlurmNodeList) {
  EXPECT_EQ(first_slurm_host("node1"), "node1");
  EXPECT_EQ(first_slurm_host("node1,node2"), "node1");
  EXPECT_EQ(first_slurm_host("gpu[03-05,9],cpu1"), "gpu03");
  EXPECT_EQ(first_slurm_host("gpu[7,9]"), "gpu7");
  EXPECT_EQ(first_slurm_host("n[001-002]-ib"), "n001-ib");
  EXPECT_EQ(first_slurm_host("a-b.c[12]"), "a-b.c12");
  for (const std::string bad : {"", "gpu[", "gpu]1", "gpu[a-b]", "n[1-2]x[3-4]"}) {
    EXPECT_THROW(first_slurm_host(bad), Error) << "'" << bad << "'";
  }
}

// Runs `body(rank, group)` on two threads that form a Gloo group on localhost; rethrows the
// first failure of either.
void with_two_ranks(const std::function<void(int, ProcessGroup&)>& body,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const int port = testing::free_port();
  std::exception_ptr failures[2];
  std::vector<std::thread> threads;
  for (int rank = 0; rank < 2; ++rank) {
    threads.emplace_back([&, rank] {
      try {
        DistributedEnv env;
        env.rank = rank;
        env.world_size = 2;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        env.launcher = "test";
        ProcessGroup group(env, torch::kCPU, timeout);
        body(rank, group);
      } catch (...) {
        failures[rank] = std::current_exception();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& failure : failures) {
    if (failure) std::rethrow_exception(failure);
  }
}

TEST(ProcessGroup, AveragesInBucketsBroadcastsAndSums) {
  with_two_ranks([](int rank, ProcessGroup& group) {
    EXPECT_EQ(group.world_size(), 2);
    EXPECT_STREQ(group.backend_name(), "gloo");
    // Three tensors, 16-byte buckets: each tensor its own bucket, mean = (r0 + r1) / 2.
    const double r = rank;
    std::vector<torch::Tensor> tensors = {torch::full({2, 2}, 1.0 + r),
                                          torch::arange(3, torch::kFloat) * (1.0 + 3 * r),
                                          torch::full({1}, -4.0 * r)};
    group.average(tensors, 16);
    EXPECT_TRUE(torch::allclose(tensors[0], torch::full({2, 2}, 1.5)));
    EXPECT_TRUE(torch::allclose(tensors[1], torch::arange(3, torch::kFloat) * 2.5));
    EXPECT_TRUE(torch::allclose(tensors[2], torch::full({1}, -2.0)));

    std::vector<torch::Tensor> weights = {torch::full({3}, 7.0 + r), torch::full({2, 1}, r)};
    group.broadcast_from_rank0(weights);
    EXPECT_TRUE(torch::equal(weights[0], torch::full({3}, 7.0)));
    EXPECT_TRUE(torch::equal(weights[1], torch::zeros({2, 1})));

    torch::Tensor total = torch::full({1}, 10.0 + r, torch::kFloat64);
    group.sum(total);
    EXPECT_EQ(total.item<double>(), 21.0);
    group.barrier();
  });
}

TEST(ProcessGroup, RanksThatDisagreeFailOnEveryRank) {
  for (const bool same : {true, false}) {
    int errors = 0;
    std::mutex mutex;
    with_two_ranks([&](int rank, ProcessGroup& group) {
      torch::nn::Linear layer(3, 2);
      torch::NoGradGuard no_grad;
      layer->weight.fill_(0.5);
      layer->bias.fill_(same ? 0.0 : double(rank));
      try {
        check_same_weights(group, *layer, "the test layer");
        check_same_value(group, same ? 7 : rank, "the value", "hint");
      } catch (const Error& error) {
        std::lock_guard<std::mutex> lock(mutex);
        ++errors;
        EXPECT_CONTAINS(error.what(), "the test layer");
      }
    });
    EXPECT_EQ(errors, same ? 0 : 2) << (same ? "same" : "different") << " weights";
  }
}

TEST(ProcessGroup, AMissingRankEndsTheRendezvousWithAnError) {
  DistributedEnv env;
  env.world_size = 2;
  env.master_addr = "127.0.0.1";
  env.master_port = testing::free_port();
  const auto start = std::chrono::steady_clock::now();
  const std::string message =
      error_of([&] { ProcessGroup group(env, torch::kCPU, std::chrono::seconds(2)); });
  EXPECT_CONTAINS(message, "rendezvous at 127.0.0.1:" + std::to_string(env.master_port));
  EXPECT_CONTAINS(message, "all 2 ranks were started");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(DataParallelTrainStep, TwoRanksMatchOneProcessOnTheCombinedBatch) {
  // Rank r trains on rows [4r, 4r + 4) of an 8-image batch; one process trains on all 8. After
  // 3 steps (Adam, clipping, EMA), both ranks hold the same weights, which match the single
  // process's up to float summation order. Adam divides by the gradient's own running scale,
  // which magnifies those last-bit differences where a gradient is small: over 19 random
  // batches the largest weight difference was 1e-6 to 1.5e-5, so the tolerance is 5e-5 absolute
  // on weights of size ~0.1. Adam's first steps move each weight by ~lr = 1e-3, so a wrong
  // gradient (not averaged, or half of the batch) would show.
  const DataConfig data = testing::image_config(1, 8, 8);
  ModelConfig model_config = testing::small_model_config();
  model_config.attention_resolutions = {4};
  TrainConfig options;
  options.lr = 1e-3;
  options.warmup_steps = 0;
  options.ema_decay = 0.5;
  const NoiseSchedule schedule{DiffusionConfig{}};
  torch::manual_seed(5);  // the same batch whatever ran before
  const torch::Tensor x0 = torch::rand({8, 1, 8, 8}, torch::TensorOptions()) * 2 - 1;
  constexpr int kSteps = 3;

  const auto make_models = [&] {
    torch::manual_seed(11);
    std::pair<UNet, UNet> models{UNet(model_config, data), UNet(model_config, data)};
    copy_weights(*models.first, *models.second);
    return models;
  };
  auto [single, single_ema] = make_models();
  double single_norms[kSteps];
  {
    TrainStep step(single, single_ema, schedule, options, LossOptions{}, Precision::fp32);
    for (int s = 0; s < kSteps; ++s) single_norms[s] = step.run(x0, NoiseKey{1, s, 0}, s).grad_norm;
  }

  std::pair<UNet, UNet> ranks[2] = {make_models(), make_models()};
  with_two_ranks([&](int rank, ProcessGroup& group) {
    auto& [model, ema] = ranks[rank];
    TrainStep step(model, ema, schedule, options, LossOptions{}, Precision::fp32, &group);
    for (int s = 0; s < kSteps; ++s) {
      const auto result = step.run(x0.narrow(0, 4 * rank, 4), NoiseKey{1, s, 4 * rank}, s,
                                   /*stop_requested=*/rank == 1 && s == 1);
      EXPECT_TRUE(result.applied);
      EXPECT_EQ(result.stop, s == 1) << "rank " << rank << " step " << s;  // rank 1 asked
      // The averaged gradient is the whole batch's (Adam alone would hide a wrong scale).
      EXPECT_NEAR(result.grad_norm, single_norms[s], 1e-5 * single_norms[s]) << "step " << s;
    }
  });

  const auto p0 = ranks[0].first->parameters(), p1 = ranks[1].first->parameters();
  const auto reference = single->parameters();
  const auto e0 = ranks[0].second->parameters(), ereference = single_ema->parameters();
  double largest_difference = 0.0;
  for (size_t i = 0; i < p0.size(); ++i) {
    ASSERT_TRUE(torch::equal(p0[i], p1[i])) << "parameter " << i << " differs between ranks";
    largest_difference = std::max(largest_difference,
                                  (p0[i] - reference[i]).abs().max().item<double>());
    EXPECT_TRUE(torch::allclose(e0[i], ereference[i], 0.0, 5e-5)) << "EMA parameter " << i;
  }
  EXPECT_LT(largest_difference, 5e-5);
}

}  // namespace
}  // namespace ddpm
