// One optimisation step: draw t and eps, forward and backward (under autocast in bf16 or fp16,
// precision.h) over train.grad_accumulation micro-batches, average the gradients over the ranks
// of a data-parallel run, unscale them (fp16's loss scaling, loss_scaler.h), clip the global
// gradient norm, and, when the gradients are finite, Adam with the step's warm-up learning rate
// and the EMA update. The step's one host synchronisation reads the norm, the overflow flag and
// the ranks' stop vote together. The next step's noise is drawn meanwhile (noise_prefetch.h).
// Shared by train() and `ddpm bench`.
#pragma once

#include <optional>

#include <torch/torch.h>

#include "base/precision.h"
#include "config/config.h"
#include "diffusion/loss.h"
#include "diffusion/schedule.h"
#include "distributed/process_group.h"
#include "model/unet.h"
#include "train/ema.h"
#include "train/loss_scaler.h"
#include "train/noise_prefetch.h"
#include "train/timestep_resampler.h"

namespace ddpm {

// An objective other than the config's diffusion loss (distillation: distill_objective.h).
class StepObjective {
 public:
  virtual ~StepObjective() = default;
  // Replaces the timesteps (and weights) of step `noise`'s draws.
  virtual void choose_timesteps(NoiseDraw& draw, const NoiseKey& noise) const = 0;
  // Each example's loss ([B] float32) of `model` (its raw output) on x0 with the draws; the
  // classes of a class-conditional model (undefined otherwise). Runs under autocast.
  virtual torch::Tensor example_losses(const EpsilonPredictor& model, const torch::Tensor& x0,
                                       const NoiseDraw& draw,
                                       const torch::Tensor& classes) const = 0;
};

class TrainStep {
 public:
  struct Result {
    torch::Tensor loss;   // on the device; reading it synchronises
    double grad_norm;     // before clipping; read on the host (the step's one synchronisation)
    bool applied;         // false when a gradient was not finite: no update was made
    bool overflow;        // fp16: not applied because of the loss scale (the scale backed off)
    double loss_scale;    // fp16: the scale after this step's update (0 in bf16 and fp32)
    bool scale_collapsed;  // fp16: the scale fell below train.loss_scale_min (diverged)
    double ema_decay;     // the decay of this step's EMA update (0 when none was made)
    bool stop;            // some rank asked to stop after this step (every rank gets the same)
  };

  // With a process group, every rank's model must start equal (see ProcessGroup); the
  // gradients are then averaged, so the models stay equal step after step. With an
  // `objective` (which must outlive the step), it replaces `loss`, and no class is dropped.
  TrainStep(UNet& model, UNet& ema_model, const NoiseSchedule& schedule,
            const TrainConfig& options, const LossOptions& loss, Precision precision,
            ProcessGroup* group = nullptr, const StepObjective* objective = nullptr);

  // x0 is this rank's part of the batch; `step` is 0-based and sets the warm-up learning rate.
  // `stop_requested` is this rank's wish to stop after the step; the ranks agree in Result::stop.
  // A class-conditional model takes the images' classes (CPU int64 [B]); train.class_dropout
  // of them become "no class" (drop_classes).
  Result run(const torch::Tensor& x0, const NoiseKey& noise, int64_t step,
             bool stop_requested = false, const torch::Tensor& labels = {});

  torch::optim::Adam& optimizer() { return optimizer_; }
  // fp16's loss scaler (null in bf16 and fp32): its state goes into checkpoints.
  LossScaler* loss_scaler() { return scaler_ ? &*scaler_ : nullptr; }
  // train.timestep_sampling loss_aware's resampler (null when uniform): its state goes into
  // checkpoints.
  TimestepResampler* timestep_resampler() { return resampler_ ? &*resampler_ : nullptr; }

 private:
  // The micro-batches' forward and backward passes; returns the batch's loss. With the
  // resampler, `example_losses` gets each example's unweighted loss.
  torch::Tensor accumulate_gradients(const torch::Tensor& x0, const NoiseDraw& draw,
                                     const torch::Tensor& classes, torch::Tensor* example_losses);
  // loss_aware: the draws' timesteps from the resampler, weighted (once it is warmed up).
  void importance_sample(NoiseDraw& draw, const NoiseKey& noise) const;
  // loss_aware: every rank's (t, loss) pairs of the step, in global example order, into the
  // resampler's history.
  void record_losses(const NoiseDraw& draw, const torch::Tensor& losses, const NoiseKey& noise);
  // The ranks' gradients averaged, unscaled, clipped; the update (or not) and the EMA.
  void finish_update(const torch::Tensor& x0, bool stop_requested, int64_t step, Result& result);

  UNet model_;
  const NoiseSchedule& schedule_;
  TrainConfig options_;
  Precision precision_;
  std::optional<LossScaler> scaler_;
  std::optional<TimestepResampler> resampler_;
  ProcessGroup* group_;
  std::vector<torch::Tensor> parameters_;
  torch::optim::Adam optimizer_;
  ExponentialMovingAverage ema_;
  LossOptions loss_options_;
  const StepObjective* objective_;
  NoisePrefetcher noise_;
};

// Classifier-free guidance training: example i of `labels` (example noise.first_example + i of
// step noise.step) becomes `no_class` with probability p, decided by a hash of (seed, step,
// example index), so the choice does not depend on batch splits, ranks or resumption.
torch::Tensor drop_classes(const torch::Tensor& labels, double p, int64_t no_class,
                           const NoiseKey& noise);

// The objective a config trains: diffusion.prediction, train.loss_weighting, min_snr_gamma,
// train.loss and vlb_weight (with the variances of L_vlb: learned, else sample.variance).
LossOptions loss_options(const Config& config);

// Throws ddpm::Error (config) unless train.grad_accumulation `parts` divides a process's part of
// the batch, `batch` images (`batch_description` follows the number in the message).
void check_grad_accumulation(int64_t batch, int64_t parts, const std::string& batch_description);

// fp16's loss-scaler settings of a config (train.loss_scale_*).
LossScalerOptions loss_scaler_options(const TrainConfig& train);

// The learning rate at a step (0-based): linear warm-up to train.lr over warmup_steps.
double learning_rate(const TrainConfig& train, int64_t step);

}  // namespace ddpm
