// The training objective of `ddpm distill` (distillation.h): the teacher of the current round,
// its grid, and for each example a student point drawn uniformly (a hash of the seed, the step
// and the example's global index, as every draw of a training step: independent of batch
// splits, ranks and resumption). TrainStep runs it in place of the diffusion loss.
#pragma once

#include <filesystem>
#include <optional>

#include <torch/torch.h>

#include "base/precision.h"
#include "config/config.h"
#include "diffusion/distillation.h"
#include "diffusion/schedule.h"
#include "formats/checkpoint.h"
#include "model/unet.h"
#include "train/train_step.h"

namespace ddpm {

class DistillationObjective final : public StepObjective {
 public:
  // A teacher network of the config's model on `device` (its weights come with start_round).
  DistillationObjective(const Config& config, const NoiseSchedule& schedule, torch::Device device);

  // Round `round` (0-based) begins with these weights as its teacher: its grid is
  // start_steps >> round teacher steps.
  void start_round(int64_t round, const torch::nn::Module& teacher_weights);

  // A resumed run: round `round` with the teacher of checkpoint `file` (its `teacher` weights;
  // throws ddpm::Error (runtime) when it has none).
  void resume(const TensorMap& teacher, int64_t round, const std::filesystem::path& file);

  UNet& teacher() { return teacher_; }
  int teacher_steps() const { return grid_.steps(); }

  // Each example's t becomes the timestep of its student point on the teacher's grid.
  void choose_timesteps(NoiseDraw& draw, const NoiseKey& noise) const override;
  torch::Tensor example_losses(const EpsilonPredictor& model, const torch::Tensor& x0,
                               const NoiseDraw& draw,
                               const torch::Tensor& classes) const override;

 private:
  Config config_;
  const NoiseSchedule& schedule_;
  torch::Device device_;
  UNet teacher_;
  DistillationOptions options_;
  TimestepGrid grid_;
  std::optional<GridTables> tables_;  // grid_'s, on the device
  // [T] int64 on the device: the grid point of each timestep (-1: none).
  torch::Tensor point_of_timestep_;
};

}  // namespace ddpm
