// Progressive distillation (Salimans & Ho 2022, Algorithm 2) on the discrete schedule: a
// student learns to take in one DDIM step (eta 0) what its teacher takes in two.
//
// The teacher runs N steps on the trailing grid (timestep_grid.h: t_i = round((i+1) T / N) - 1,
// which starts at T - 1; with N a power of two and T = 1000 the values are exact in float64), so
// the student's N / 2-step trailing grid is every other point of the teacher's: student point k
// is teacher point 2k, and both chains end at the clean image (alpha_bar 1). For an example x0,
// noise eps and a student point k, with z_t = a_t x0 + s_t eps (a = sqrt(alpha_bar),
// s = sqrt(1 - alpha_bar)) at teacher point 2k, two teacher DDIM steps give z_t'' at point
// 2k + 2, and the target is the x0 that one DDIM step from z_t must use to land on it:
//     x~ = (z_t'' - (s_t'' / s_t) z_t) / (a_t'' - (s_t'' / s_t) a_t).
// The loss is w(t) ||x~ - x^_student(z_t)||^2 (mean over the example's elements), with
// w = max(SNR_t, 1) (truncated_snr) or SNR_t + 1 (snr_plus_one), SNR = a^2 / s^2. The student's
// x^ is its prediction (eps, x0 or v) converted at t (prediction.h), unclipped.
//
// The teacher's DDIM steps are the ddim solver's (solvers/ddim.cpp), clipping included: with
// clip_denoised the step uses clip(x^) and the eps consistent with it, so a DDIM step is
// z' = (a' - s' a / s) clip(x^) + (s' / s) z, and a student whose clipped x^ equals x~ repeats
// the teacher's two steps exactly (also under `ddpm sample`, which clips the same way).
#pragma once

#include <torch/torch.h>

#include "config/choices.h"
#include "diffusion/loss.h"
#include "diffusion/schedule.h"
#include "diffusion/timestep_grid.h"

namespace ddpm {

// The teacher's grid of a round: `teacher_steps` DDIM steps, trailing spacing (N + 1 points).
TimestepGrid distillation_grid(const ScheduleTable& table, int teacher_steps);

// A grid's per-point tables on one device, made once per round rather than at every step:
// alpha_bar at the N + 1 points (float64; 1 at the clean image) and the N model timesteps
// (int64). Made from a grid where one is expected, on the CPU.
struct GridTables {
  GridTables(const TimestepGrid& grid, torch::Device device = torch::kCPU);  // NOLINT: implicit
  torch::Tensor alpha_bar, timesteps;
};

// Per-example noise levels, as [B, 1, 1, 1] tensors of `like`'s dtype and device, from float64
// alpha_bar values [B] (any device): a = sqrt(ab), s = sqrt(1 - ab), computed in float64.
struct NoiseLevels {
  torch::Tensor a, s;
};
NoiseLevels noise_levels(const torch::Tensor& alpha_bar, const torch::Tensor& like);

// x0 from a model's prediction part at x_t (prediction.h's conversions, per example).
torch::Tensor x0_from_prediction(Prediction prediction, const torch::Tensor& output,
                                 const torch::Tensor& x_t, const NoiseLevels& at);

// One DDIM step (eta 0) of every example from x at `from` to `to`, given the model's prediction
// part at x: x0 clipped to [-1, 1] when `clip`, and the eps consistent with it, as the ddim
// solver does. `to` may be the clean image (a = 1, s = 0).
torch::Tensor ddim_step(Prediction prediction, const torch::Tensor& output,
                        const torch::Tensor& x, const NoiseLevels& from, const NoiseLevels& to,
                        bool clip);

// x~: the x0 with which one DDIM step from z at `from` lands on z_next at `to` (see above).
torch::Tensor distillation_target(const torch::Tensor& z, const torch::Tensor& z_next,
                                  const NoiseLevels& from, const NoiseLevels& to);

// The weight of an example's squared error in x0, per example: max(SNR, 1) or SNR + 1.
torch::Tensor distillation_weight(DistillWeighting weighting, const NoiseLevels& at);

struct DistillationOptions {
  Prediction prediction = Prediction::eps;  // teacher and student alike
  DistillWeighting weighting = DistillWeighting::truncated_snr;
  bool clip = true;                          // sample.clip_denoised of the teacher's steps
  int64_t channels = 3;                      // the image's (the output may hold 2 x channels)
};

// The target x~ of each example of z ([B, C, H, W], at the teacher's grid point 2k for the
// student point k = points[i]; `points` [B] int64 on z's device): the teacher's two DDIM steps
// from it, run without autograd, and the x0 of the one step that repeats them.
torch::Tensor teacher_target(const EpsilonPredictor& teacher, const GridTables& grid,
                             const torch::Tensor& z, const torch::Tensor& points,
                             const DistillationOptions& options);

// Each example's loss ([B] float32): w(t) mean((x~ - x^_student(z_t))^2), z_t = a x0 + s eps at
// the student points `points` (teacher points 2k).
torch::Tensor distillation_losses(const EpsilonPredictor& student,
                                  const EpsilonPredictor& teacher, const GridTables& grid,
                                  const torch::Tensor& x0, const torch::Tensor& eps,
                                  const torch::Tensor& points,
                                  const DistillationOptions& options);

}  // namespace ddpm
