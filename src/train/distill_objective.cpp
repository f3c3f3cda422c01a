// The distillation objective; see distill_objective.h.
#include "train/distill_objective.h"

#include <algorithm>

#include "base/device.h"
#include "ddpm/error.h"
#include "diffusion/guidance.h"
#include "formats/weights.h"
#include "train/ema.h"
#include "train/timestep_resampler.h"

namespace ddpm {

DistillationObjective::DistillationObjective(const Config& config, const NoiseSchedule& schedule,
                                             torch::Device device)
    : config_(config),
      schedule_(schedule),
      device_(device),
      teacher_(UNet(config.model, config.data)) {
  teacher_->to(device);
  teacher_->set_channels_last(prefers_channels_last(device));
  teacher_->eval();
  for (auto& parameter : teacher_->parameters()) parameter.set_requires_grad(false);
  options_.prediction = config.diffusion.prediction;
  options_.weighting = config.distill.weighting;
  options_.clip = config.sample.clip_denoised;
  options_.channels = config.data.channels;
}

void DistillationObjective::start_round(int64_t round,
                                        const torch::nn::Module& teacher_weights) {
  copy_weights(teacher_weights, *teacher_);
  grid_ = distillation_grid(schedule_.table(),
                            static_cast<int>(config_.distill.start_steps >> round));
  tables_.emplace(grid_, device_);
  std::vector<int64_t> points(schedule_.timesteps(), -1);
  for (int i = 0; i < grid_.steps(); ++i) points[static_cast<int64_t>(grid_.timesteps[i])] = i;
  point_of_timestep_ = torch::tensor(points, torch::kLong).to(device_);
}

void DistillationObjective::resume(const TensorMap& teacher, int64_t round,
                                   const std::filesystem::path& file) {
  if (teacher.empty()) {
    throw Error(ErrorKind::runtime, "checkpoint '" + file.string() +
                                        "' holds no teacher: it is not a distillation run's; "
                                        "resume it with ddpm train --resume");
  }
  UNet weights(config_.model, config_.data);
  load_state_dict(*weights, teacher, "the teacher of checkpoint '" + file.string() + "'");
  start_round(round, *weights);
}

void DistillationObjective::choose_timesteps(NoiseDraw& draw, const NoiseKey& noise) const {
  const int64_t count = draw.t.size(0);
  const int64_t student_points = grid_.steps() / 2;
  const std::vector<double> uniforms = timestep_uniforms(noise, count);
  std::vector<int64_t> t(count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t point =
        std::min(student_points - 1, static_cast<int64_t>(uniforms[i] * double(student_points)));
    t[i] = static_cast<int64_t>(grid_.timesteps[2 * point]);
  }
  draw.t = torch::tensor(t, torch::kLong).to(draw.t.device());
  draw.weight = torch::Tensor();
}

torch::Tensor DistillationObjective::example_losses(const EpsilonPredictor& model,
                                                    const torch::Tensor& x0,
                                                    const NoiseDraw& draw,
                                                    const torch::Tensor& classes) const {
  const torch::Tensor points =
      point_of_timestep_.index_select(0, draw.t.to(device_)).div(2, "floor");
  // The guided teacher runs in the step's autocast; guided_predictor adds none of its own.
  UNet teacher = teacher_;
  const EpsilonPredictor guided =
      guided_predictor(teacher, classes, config_.distill.guidance, Precision::fp32);
  return distillation_losses(model, guided, *tables_, x0, draw.eps, points, options_);
}

}  // namespace ddpm
