// diffusers' scheduler config to our diffusion and sample sections; see diffusers_config.h.
#include "interop/diffusers_config.h"

#include <algorithm>
#include <tuple>
#include <vector>

#include "ddpm/error.h"
#include "interop/diffusers_fields.h"

namespace ddpm {
namespace {

using nlohmann::json;

// A field ddpm reads but cannot reproduce: a line in `warnings` unless it has its default.
void warn_unless_default(DiffusersFields& fields, const std::string& key, const json& fallback,
                         const char* what, std::vector<std::string>& warnings) {
  const json value = fields.get(key, fallback);
  if (value != fallback) {
    warnings.push_back(fields.file() + ": " + key + " " + value.dump() +
                       " is not applied: " + what);
  }
}

// What a scheduler class is: the DDPM family steps between schedule timesteps; the sigma
// family (Euler, Euler ancestral, Heun) and DPM-Solver run on sigmas.
struct SchedulerClass {
  std::string name;
  bool sigma_family = false;
  bool dpm = false;
};

SchedulerClass scheduler_class(const std::string& name) {
  return {name,
          name == "EulerDiscreteScheduler" || name == "EulerAncestralDiscreteScheduler" ||
              name == "HeunDiscreteScheduler",
          name == "DPMSolverMultistepScheduler"};
}

// The sampler of the scheduler class and its number of steps, so that a pipeline folder samples
// as its scheduler does: DDPM, DDIM, Euler, Euler ancestral, Heun and DPM-Solver multistep
// (dpmsolver++, sde-dpmsolver++) have counterparts; another class samples with ddpm.
void read_sampler(DiffusersFields& fields, const SchedulerClass& scheduler, int64_t timesteps,
                  SampleConfig& sample, std::vector<std::string>& warnings) {
  const std::string& name = scheduler.name;
  const bool sigma_or_dpm = scheduler.sigma_family || scheduler.dpm;
  if (!sigma_or_dpm && name != "DDPMScheduler" && name != "DDIMScheduler") {
    warnings.push_back(fields.file() + ": " + name + " has no ddpm counterpart; sampling with "
                       "ddpm (DDPMScheduler's defaults); see ddpm sample --list-samplers");
  }
  // DDPM's sampling runs every timestep; the others take 50 steps (diffusers' pipelines ask for
  // a number of steps at call time: pass --steps).
  const bool every_timestep = !(sigma_or_dpm || name == "DDIMScheduler");
  sample.steps = every_timestep ? static_cast<int>(timesteps)
                                : static_cast<int>(std::clamp<int64_t>(timesteps - 1, 1, 50));
  sample.sampler = SamplerKind::ddpm;
  if (name == "DDIMScheduler") {
    sample.sampler = SamplerKind::ddim;
    // A distilled student's export (distillation.h) names the steps it was distilled for.
    sample.steps = fields.integer("_ddpm_sample_steps", sample.steps, 1);
  }
  if (name == "EulerDiscreteScheduler") sample.sampler = SamplerKind::euler;
  if (name == "EulerAncestralDiscreteScheduler") sample.sampler = SamplerKind::euler_ancestral;
  if (name == "HeunDiscreteScheduler") sample.sampler = SamplerKind::heun;
  if (!scheduler.dpm) return;
  const std::string algorithm = fields.text("algorithm_type", "dpmsolver++");
  if (algorithm == "sde-dpmsolver++") {
    sample.sampler = SamplerKind::dpmpp_2m_sde;
  } else {
    sample.sampler = SamplerKind::dpmpp_2m;
    if (algorithm != "dpmsolver++") {
      warnings.push_back(fields.file() + ": algorithm_type '" + algorithm +
                         "' is not applied: ddpm runs DPM-Solver++ (dpmsolver++)");
    }
  }
  warn_unless_default(fields, "solver_order", 2, "ddpm's DPM-Solver++ is second order (2M)",
                      warnings);
  warn_unless_default(fields, "solver_type", "midpoint",
                      "ddpm's DPM-Solver++(2M) uses the midpoint form", warnings);
  warn_unless_default(fields, "euler_at_final", false, "ddpm's last step is first order already",
                      warnings);
  warn_unless_default(fields, "use_lu_lambdas", false,
                      "ddpm spaces by timesteps or Karras sigmas", warnings);
}

// The scheduler's variance, clipping and timestep spacing, with the class's own defaults.
void read_sampling_choices(DiffusersFields& fields, const SchedulerClass& scheduler,
                           SampleConfig& sample, std::vector<std::string>& warnings) {
  const bool sigma_or_dpm = scheduler.sigma_family || scheduler.dpm;
  if (!sigma_or_dpm) {
    const json variance = fields.get("variance_type", "fixed_small");
    if (variance == "fixed_small" || variance == "fixed_small_log" || variance.is_null()) {
      sample.variance = Variance::fixed_small;
    } else if (variance == "fixed_large" || variance == "fixed_large_log") {
      sample.variance = Variance::fixed_large;
    } else if (variance == "learned_range") {
      sample.variance = Variance::learned;
    } else {
      fields.refuse("variance_type", variance,
                    "fixed_small, fixed_large and learned_range (a network whose variance "
                    "output is the log variance itself, diffusers' \"learned\", is not "
                    "supported)");
    }
  }
  // DDPM and DDIM clip by default; Heun only when asked; Euler and DPM-Solver never.
  if (scheduler.name == "HeunDiscreteScheduler") {
    sample.clip_denoised = fields.boolean("clip_sample", false);
  } else {
    sample.clip_denoised = !sigma_or_dpm && fields.boolean("clip_sample", true);
  }
  const bool karras = fields.boolean("use_karras_sigmas", false);
  if (karras && !sigma_or_dpm) {
    warnings.push_back(fields.file() + ": use_karras_sigmas is not applied: " + scheduler.name +
                       " steps between schedule timesteps");
  }
  const std::string spacing = fields.text("timestep_spacing", sigma_or_dpm ? "linspace" : "leading");
  if (karras && sigma_or_dpm) {
    sample.spacing = Spacing::karras;
  } else if (spacing == "leading" || spacing == "trailing" || spacing == "linspace") {
    sample.spacing = choice_from_name<Spacing>(spacing, "timestep_spacing");
  } else {
    warnings.push_back(fields.file() + ": timestep_spacing '" + spacing +
                       "' has no ddpm counterpart; sampling uses sample.spacing leading");
    sample.spacing = Spacing::leading;
  }
}

// The fields that change how diffusers samples in ways ddpm does not reproduce.
void warn_about_sampling_extras(DiffusersFields& fields, std::vector<std::string>& warnings) {
  const std::vector<std::tuple<const char*, json, const char*>> extras = {
      {"final_sigmas_type", "zero", "ddpm's chains end at sigma = 0"},
      {"interpolation_type", "linear", "ddpm interpolates sigma linearly in t"},
      {"use_exponential_sigmas", false, "ddpm spaces by timesteps or Karras sigmas"},
      {"use_beta_sigmas", false, "ddpm spaces by timesteps or Karras sigmas"},
      {"clip_sample_range", 1.0, "ddpm clips the predicted x0 to [-1, 1]"},
      {"thresholding", false, "ddpm clips instead of thresholding dynamically"},
      {"steps_offset", 0, "ddpm's leading spacing starts at timestep 0"},
      {"set_alpha_to_one", true, "ddpm's DDIM ends at alpha_bar = 1"}};
  for (const auto& [key, fallback, what] : extras) {
    warn_unless_default(fields, key, fallback, what, warnings);
  }
}

}  // namespace

void read_diffusers_scheduler(const json* scheduler, const std::string& file, Config& config,
                              std::vector<std::string>& warnings) {
  const json none = json::object();
  if (scheduler && !scheduler->is_object()) {
    throw Error(ErrorKind::config, file + ": is not a JSON object (a scheduler config)");
  }
  if (!scheduler) {
    warnings.push_back("no scheduler config: using DDPMScheduler's defaults (linear betas 1e-4 to "
                       "0.02 over 1000 steps, fixed_small variance, clipped x0)");
  }
  DiffusersFields fields(scheduler ? *scheduler : none, file);
  DiffusionConfig& diffusion = config.diffusion;
  SampleConfig& sample = config.sample;
  diffusion.timesteps = fields.integer("num_train_timesteps", 1000, 1);
  diffusion.beta_start = fields.number("beta_start", 0.0001);
  diffusion.beta_end = fields.number("beta_end", 0.02);
  const std::string schedule = fields.text("beta_schedule", "linear");
  const json trained = fields.get("trained_betas", nullptr);
  if (!trained.is_null()) {
    if (!trained.is_array()) fields.refuse("trained_betas", trained, "null or a list of numbers");
    diffusion.schedule = Schedule::custom;
    for (const json& beta : trained) {
      if (!beta.is_number()) fields.refuse("trained_betas", beta, "a list of numbers");
      diffusion.betas.push_back(beta.get<double>());
    }
    if (diffusion.betas.size() != static_cast<size_t>(diffusion.timesteps)) {
      fields.refuse("trained_betas", json(diffusion.betas.size()),
                    "one beta per timestep (num_train_timesteps = " +
                        std::to_string(diffusion.timesteps) + ")");
    }
  } else if (schedule == "linear" || schedule == "sigmoid") {
    diffusion.schedule = choice_from_name<Schedule>(schedule, "beta_schedule");
  } else if (schedule == "scaled_linear") {
    diffusion.schedule = Schedule::quadratic;  // linear in sqrt(beta), as DDPM's "quad"
  } else if (schedule == "squaredcos_cap_v2") {
    diffusion.schedule = Schedule::cosine;
    diffusion.cosine_s = 0.008;
    diffusion.max_beta = 0.999;
  } else {
    fields.refuse("beta_schedule", schedule,
                  "linear, scaled_linear, squaredcos_cap_v2, sigmoid, or trained_betas");
  }
  const std::string prediction = fields.text("prediction_type", "epsilon");
  if (prediction == "epsilon") {
    diffusion.prediction = Prediction::eps;
  } else if (prediction == "sample") {
    diffusion.prediction = Prediction::x0;
  } else if (prediction == "v_prediction") {
    diffusion.prediction = Prediction::v;
  } else {
    fields.refuse("prediction_type", prediction, "epsilon, sample or v_prediction");
  }
  fields.require("rescale_betas_zero_snr", false, false);
  std::string class_name = "DDPMScheduler";
  if (scheduler && scheduler->contains("_class_name") && (*scheduler)["_class_name"].is_string()) {
    class_name = (*scheduler)["_class_name"].get<std::string>();
  }
  const SchedulerClass kind = scheduler_class(class_name);
  read_sampler(fields, kind, diffusion.timesteps, sample, warnings);
  read_sampling_choices(fields, kind, sample, warnings);
  warn_about_sampling_extras(fields, warnings);
}

}  // namespace ddpm
