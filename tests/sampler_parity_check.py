#!/usr/bin/env python3
"""Every sampler of ddpm against the diffusers scheduler of the same method.

For each case, tests/tools/sample_oracle runs our sampler with a closed-form Gaussian oracle
eps(x, t) and saves x_T, the noise it drew, the timestep of every model call and the final x_0.
This script writes the same oracle in torch, replays the chain with diffusers' scheduler
(DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler,
HeunDiscreteScheduler, DPMSolverMultistepScheduler) from the same x_T and with the same noise
(DDPM also with learned variances, variance_type learned_range),
and checks
  - that diffusers calls the model at exactly our timesteps (their spacing conventions; for the
    fractional karras timesteps of euler and heun within 0.01: diffusers derives them from its
    float32 alpha_bar, we from float64, and the log-sigma interpolation turns that 1e-7 relative
    difference into up to 0.006 timesteps; with a float64 table diffusers' own _sigma_to_t gives
    ours), and
  - that the final samples agree within 1e-4 (max |difference|; the samples are of size ~1 and
    both chains run in float32, ours with float64 coefficients).
"""
import argparse
import math
import pathlib
import subprocess
import sys

import torch

try:
    import diffusers
    from diffusers.schedulers import (scheduling_ddpm, scheduling_euler_ancestral_discrete)
    from safetensors.torch import load_file
except ImportError:
    sys.exit("diffusers is not installed in this Python: run `pip install diffusers` "
             "(scripts/setup.sh --test does it in the project's virtual environment)")

TOLERANCE = 1e-4
PIXELS = 16


def oracle_eps(x, t, sigmas):
    """The oracle of sample_oracle.cpp, in float64."""
    t = float(t)
    j = min(int(math.floor(t)), len(sigmas) - 2)
    w = t - j
    sigma = sigmas[j] if w == 0 else math.exp((1 - w) * math.log(sigmas[j]) + w * math.log(sigmas[j + 1]))
    ab = 1.0 / (1.0 + sigma * sigma)
    p = torch.arange(PIXELS, dtype=torch.float64)
    mu = (-0.6 + 1.2 * p / (PIXELS - 1)).view(1, 1, 4, 4)
    s = (0.2 + 0.5 * torch.remainder(7 * p, PIXELS) / (PIXELS - 1)).view(1, 1, 4, 4)
    x64 = x.to(torch.float64)
    return ((x64 - math.sqrt(ab) * mu) * math.sqrt(1 - ab) / (ab * s * s + (1 - ab))).to(torch.float32)


def oracle_variance(like):
    """The learned-variance oracle's v of sample_oracle.cpp: the same at every t."""
    p = torch.arange(PIXELS, dtype=torch.float64)
    v = (-0.9 + 1.8 * torch.remainder(3 * p, PIXELS) / (PIXELS - 1)).view(1, 1, 4, 4)
    return v.to(torch.float32).expand_as(like)


class NoiseFeed:
    """Hands diffusers our noise, step by step; zeros where our chain drew none (the last step,
    whose noise term is multiplied by zero)."""

    def __init__(self, noise):
        self.noise = noise
        self.used = 0

    def next(self, like):
        if self.noise is not None and self.used < self.noise.shape[0]:
            value = self.noise[self.used]
            self.used += 1
            return value.clone()
        return torch.zeros_like(like)


def scheduler_for(case, T):
    common = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    sampler, spacing = case["sampler"], case["spacing"]
    karras = spacing == "karras"
    spacing_kw = {} if karras else {"timestep_spacing": spacing}
    if sampler == "ddim":
        return diffusers.DDIMScheduler(**common, clip_sample=case["clip"], set_alpha_to_one=True,
                                       steps_offset=0, **spacing_kw)
    if sampler == "ddpm":
        variance = "learned_range" if case["variance"] == "learned" else case["variance"]
        return diffusers.DDPMScheduler(**common, clip_sample=case["clip"],
                                       variance_type=variance, **spacing_kw)
    if sampler == "euler":
        return diffusers.EulerDiscreteScheduler(**common, use_karras_sigmas=karras, **spacing_kw)
    if sampler == "euler_ancestral":
        return diffusers.EulerAncestralDiscreteScheduler(**common, **spacing_kw)
    if sampler == "heun":
        return diffusers.HeunDiscreteScheduler(**common, use_karras_sigmas=karras,
                                               clip_sample=case["clip"], **spacing_kw)
    algorithm = "sde-dpmsolver++" if sampler == "dpmpp_2m_sde" else "dpmsolver++"
    return diffusers.DPMSolverMultistepScheduler(**common, algorithm_type=algorithm, solver_order=2,
                                                 solver_type="midpoint", lower_order_final=True,
                                                 use_karras_sigmas=karras, **spacing_kw)


def float64_sigmas(T):
    """The schedule's sigmas in float64, as ours: linear betas 1e-4 .. 0.02."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    return ((1 - alpha_bar) / alpha_bar).sqrt().tolist()


def replay(case, ours, T):
    scheduler = scheduler_for(case, T)
    scheduler.set_timesteps(case["steps"])
    sigmas_table = float64_sigmas(T)
    feed = NoiseFeed(ours.get("noise"))
    sampler = case["sampler"]
    calls = []
    x = ours["x_T"].clone()
    if sampler in ("euler", "euler_ancestral", "heun"):
        # These keep y = x_t / sqrt(alpha_bar); scale_model_input gives the model x_t again.
        x = x * math.sqrt(float(scheduler.sigmas[0]) ** 2 + 1)
    patches = []
    if sampler in ("ddpm", "euler_ancestral"):
        module = scheduling_ddpm if sampler == "ddpm" else scheduling_euler_ancestral_discrete
        original = module.randn_tensor
        module.randn_tensor = lambda shape, **kw: feed.next(torch.zeros(shape))
        patches.append((module, original))
    try:
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            calls.append(float(t))
            eps = oracle_eps(model_input, t, sigmas_table)
            if case.get("variance") == "learned":
                eps = torch.cat([eps, oracle_variance(eps)], 1)
            if sampler == "ddim":
                kw = dict(eta=case["eta"], use_clipped_model_output=True)
                if case["eta"] > 0:
                    kw["variance_noise"] = feed.next(x)
                x = scheduler.step(eps, t, x, **kw).prev_sample
            elif sampler == "dpmpp_2m_sde":
                x = scheduler.step(eps, t, x, variance_noise=feed.next(x)).prev_sample
            else:
                x = scheduler.step(eps, t, x).prev_sample
    finally:
        for module, original in patches:
            module.randn_tensor = original
    return x, calls, feed.used


# diffusers' DDIMScheduler steps from t to t - T // N whatever the spacing, ours to the next
# timestep the chain visits: the two agree for leading spacing, and for trailing when N divides T,
# the cases below (with linspace, diffusers' DDIM steps to alpha_bar at timesteps it never
# visits). Its DDPMScheduler adds noise at a last timestep above 0 (trailing spacing), where ours
# adds none; with fixed_small that noise has variance 0, the case below.
CASES = [
    dict(sampler="ddim", steps=20, spacing="leading", clip=False, eta=0.0),
    dict(sampler="ddim", steps=20, spacing="trailing", clip=False, eta=0.0),
    dict(sampler="ddim", steps=20, spacing="leading", clip=True, eta=0.0),
    dict(sampler="ddim", steps=20, spacing="trailing", clip=True, eta=1.0),
    dict(sampler="ddpm", steps=50, spacing="leading", clip=True, variance="fixed_large"),
    dict(sampler="ddpm", steps=50, spacing="trailing", clip=False, variance="fixed_small"),
    # Learned variances (diffusers' learned_range): every step, and respaced.
    dict(sampler="ddpm", steps=1000, spacing="leading", clip=True, variance="learned"),
    dict(sampler="ddpm", steps=50, spacing="leading", clip=False, variance="learned"),
]
for spacing in ("linspace", "leading", "trailing", "karras"):
    CASES.append(dict(sampler="euler", steps=15, spacing=spacing, clip=False))
    CASES.append(dict(sampler="heun", steps=15, spacing=spacing, clip=False))
    CASES.append(dict(sampler="dpmpp_2m", steps=15, spacing=spacing, clip=False))
CASES += [
    dict(sampler="heun", steps=10, spacing="karras", clip=True),
    dict(sampler="dpmpp_2m", steps=10, spacing="linspace", clip=False, timesteps=1100),
    dict(sampler="euler", steps=7, spacing="linspace", clip=False, timesteps=1100),
    dict(sampler="euler_ancestral", steps=15, spacing="linspace", clip=False),
    dict(sampler="euler_ancestral", steps=15, spacing="trailing", clip=False),
    dict(sampler="dpmpp_2m_sde", steps=15, spacing="linspace", clip=False),
    dict(sampler="dpmpp_2m_sde", steps=15, spacing="karras", clip=False),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--oracle", required=True, help="the sample_oracle test tool")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for index, case in enumerate(CASES):
        T = case.get("timesteps", 1000)
        name = (f"{case['sampler']:<16} {case['steps']:>3} steps {case['spacing']:<9} T={T}"
                f"{' clip' if case['clip'] else ''}{' eta=%g' % case['eta'] if case.get('eta') else ''}")
        out = workdir / f"case{index}.safetensors"
        subprocess.run([args.oracle, case["sampler"], str(case["steps"]), case["spacing"],
                        "1" if case["clip"] else "0", str(case.get("eta", 0.0)),
                        case.get("variance", "fixed_large"), str(T), str(out)], check=True)
        ours = load_file(str(out))
        theirs, calls, used = replay(case, ours, T)
        our_calls = ours["timesteps"].tolist()
        problems = []
        fractional_karras = case["spacing"] == "karras" and case["sampler"] in (
            "euler", "euler_ancestral", "heun")
        if fractional_karras and len(calls) == len(our_calls):
            timesteps_agree = max(abs(a - b) for a, b in zip(calls, our_calls)) <= 0.01
        else:
            timesteps_agree = calls == our_calls
        if not timesteps_agree:
            problems.append(f"timesteps differ:\n    ours     {our_calls}\n    diffusers {calls}")
        drawn = 0 if "noise" not in ours else ours["noise"].shape[0]
        if used != drawn:
            problems.append(f"diffusers used {used} of our {drawn} noise draws")
        difference = (theirs - ours["x_0"]).abs().max().item()
        if not difference <= TOLERANCE:
            problems.append(f"max |x_0 difference| {difference:.3g} > {TOLERANCE}")
        print(f"{'FAIL' if problems else 'ok  '} {name}: {len(calls)} model calls, "
              f"max |difference| {difference:.2e}")
        for problem in problems:
            print("    " + problem)
        failures += bool(problems)
    print(f"diffusers {diffusers.__version__}: {len(CASES) - failures} of {len(CASES)} cases agree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
