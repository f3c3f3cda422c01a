#!/usr/bin/env python3
"""`ddpm nll` against an independent float64 re-implementation of the variational bound.

For each case, `ddpm nll --json` gives every image's bound in bits/dim; this script exports the
same model with `ddpm export`, runs it with diffusers' UNet2DModel (float32, as ours) and
computes the bound from its formulas in float64 (not from our C++):
    L = KL(q(x_T|x0) || N(0, I)) + sum_{t>=1} KL(q(x_{t-1}|x_t, x0) || p(x_{t-1}|x_t))
        - log p(x0|x1)
with the DDPM decoder (a Gaussian discretized into bins of width 2/255, the end bins open), in
bits per dimension. The noise draws are ours: image k's generator is torch's CPU generator seeded
with splitmix64(splitmix64(seed) + k), drawing one [C, H, W] standard normal per term from
t = T-1 down to 0; x_t is computed in float64 and rounded to float32 (what the network sees, and
what the bound uses). Cases: the shipped Fashion-MNIST model (v-prediction) with fixed_large and
fixed_small, and a small learned-variance model (eps, L_hybrid) trained for a few steps here.
Every image agrees within 1e-4 bits/dim.
"""
import argparse
import json
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import torch

try:
    from diffusers import UNet2DModel
    from PIL import Image
except ImportError:
    sys.exit("diffusers is not installed in this Python: run `pip install diffusers` "
             "(scripts/setup.sh --test does it in the project's virtual environment)")

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "data/models/fashion_mnist_cpu.pt"
TOLERANCE = 1e-4
MASK = (1 << 64) - 1


def run(*command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{result.stdout}{result.stderr}")
    return result.stdout


def splitmix64(value):
    value = (value + 0x9E3779B97F4A7C15) & MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK
    return value ^ (value >> 31)


def image_seed(seed, index):
    return splitmix64((splitmix64(seed) + index) & MASK)


def schedule(config):
    diffusion = config["diffusion"]
    T = diffusion["timesteps"]
    assert diffusion["schedule"] == "linear", "this check covers the linear schedule"
    betas = np.linspace(diffusion["beta_start"], diffusion["beta_end"], T, dtype=np.float64)
    alpha_bar = np.cumprod(1.0 - betas)
    alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
    posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    return dict(T=T, betas=betas, alpha_bar=alpha_bar, alpha_bar_prev=alpha_bar_prev,
                posterior_variance=posterior_variance)


def std_normal_cdf(x):
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def log_std_normal_cdf(x):
    return torch.special.log_ndtr(x)


def discretized_log_likelihood(x0, mean, log_scale):
    """log of the mass of x0's bin [x0 - 1/255, x0 + 1/255] (open at -1 and 1), float64."""
    upper = (x0 + 1.0 / 255.0 - mean) * torch.exp(-log_scale)
    lower = (x0 - 1.0 / 255.0 - mean) * torch.exp(-log_scale)
    # The mass of a middle bin from the side of the mean where it is computed accurately.
    mass_left = std_normal_cdf(upper) - std_normal_cdf(lower)
    mass_right = std_normal_cdf(-lower) - std_normal_cdf(-upper)
    middle = torch.log(torch.where(lower > 0, mass_right, mass_left).clamp_min(1e-300))
    return torch.where(x0 < -0.999, log_std_normal_cdf(upper),
                       torch.where(x0 > 0.999, log_std_normal_cdf(-lower), middle))


def gaussian_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1.0)


def bounds(unet, config, images, seed, variances):
    """The bound of every image ([C, H, W] float64 in [-1, 1]) for each variance, in bits/dim:
    {variance: [one value per image]}; one network pass per timestep serves every variance."""
    s = schedule(config)
    T, betas, ab = s["T"], s["betas"], s["alpha_bar"]
    abp, pv = s["alpha_bar_prev"], s["posterior_variance"]
    prediction = config["diffusion"]["prediction"]
    clip = config["sample"]["clip_denoised"]
    x0 = torch.stack(images)
    channels = x0.shape[1]
    generators = [torch.Generator().manual_seed(image_seed(seed, k)) for k in range(len(images))]
    totals = {variance: torch.zeros(len(images), dtype=torch.float64) for variance in variances}
    dims = x0[0].numel()

    def bits(nats):
        return nats.flatten(1).sum(1) / dims / math.log(2.0)

    for t in reversed(range(T)):
        noise = torch.stack([torch.randn(tuple(x0.shape[1:]), generator=g) for g in generators])
        x_t = (math.sqrt(ab[t]) * x0 + math.sqrt(1.0 - ab[t]) * noise.double()).float()
        with torch.no_grad():
            out = unet(x_t, torch.full((len(images),), t)).sample.double()
        x_t = x_t.double()
        a, sigma = math.sqrt(ab[t]), math.sqrt(1.0 - ab[t])
        pred = out[:, :channels]
        if prediction == "eps":
            x0_hat = (x_t - sigma * pred) / a
        elif prediction == "v":
            x0_hat = a * x_t - sigma * pred
        else:
            x0_hat = pred
        if clip:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        coef_x0 = betas[t] * math.sqrt(abp[t]) / (1.0 - ab[t])
        coef_xt = (1.0 - abp[t]) * math.sqrt(1.0 - betas[t]) / (1.0 - ab[t])
        mean = coef_x0 * x0_hat + coef_xt * x_t
        log_small = math.log(pv[t] if t > 0 else pv[1])   # beta~_0 taken as beta~_1
        for variance in variances:
            if variance == "fixed_large":
                logvar = torch.full_like(x_t, math.log(betas[t]) if t > 0 else math.log(pv[1]))
            elif variance == "fixed_small":
                logvar = torch.full_like(x_t, log_small)
            else:
                frac = (out[:, channels:] + 1.0) / 2.0
                logvar = frac * math.log(betas[t]) + (1.0 - frac) * log_small
            if t == 0:
                totals[variance] += bits(-discretized_log_likelihood(x0, mean, 0.5 * logvar))
            else:
                true_mean = coef_x0 * x0 + coef_xt * x_t
                totals[variance] += bits(gaussian_kl(true_mean, torch.full_like(x_t, log_small),
                                                     mean, logvar))
    prior = bits(gaussian_kl(math.sqrt(ab[-1]) * x0, torch.full_like(x0, math.log(1.0 - ab[-1])),
                             torch.zeros_like(x0), torch.zeros_like(x0)))
    return {variance: (totals[variance] + prior).tolist() for variance in variances}


def write_images(folder, count, size):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    images = []
    for k in range(count):
        y, x = np.mgrid[0:size, 0:size]
        pixels = (127 + 100 * np.sin(x / (2.0 + k) + y / 3.0) + rng.integers(-20, 20, (size, size)))
        pixels = pixels.clip(0, 255).astype(np.uint8)
        if k == 0:
            pixels[0, 0], pixels[0, 1] = 0, 255   # the two open end bins
        Image.fromarray(pixels, mode="L").save(folder / f"img_{k}.png")
        images.append(torch.from_numpy(pixels).double().div(127.5).sub(1.0)[None])
    return images


def train_learned_model(ddpm, work):
    data = work / "train_images"
    write_images(data, 8, 8)
    config = {
        "data": {"path": str(data), "image_size": 8, "channels": 1},
        "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                  "attention_resolutions": [4], "norm_groups": 8, "learn_variance": True},
        "diffusion": {"timesteps": 40},
        "train": {"batch_size": 4, "steps": 6, "lr": 0.002, "warmup_steps": 1, "ema_decay": 0.0,
                  "loss": "hybrid", "log_every": 1, "checkpoint_every": 6, "sample_every": 0,
                  "device": "cpu", "seed": 5},
        "sample": {"steps": 40, "num_images": 4, "batch_size": 4},
    }
    path = work / "learned.json"
    path.write_text(json.dumps(config))
    run(ddpm, "train", "--config", path, "--out", work / "learned_run", "--threads", "2")
    return work / "learned_run"


def check(ddpm, work, name, checkpoint, images_dir, images, variances, seed):
    export = work / f"{name}_diffusers"
    run(ddpm, "export", "--checkpoint", checkpoint, "--out", export, "--overwrite")
    unet = UNet2DModel.from_pretrained(export / "unet").eval()
    config = json.loads(run(ddpm, "config", "--checkpoint", checkpoint))
    reference = bounds(unet, config, images, seed, variances)
    ok = True
    for variance in variances:
        out = work / f"{name}_{variance}.json"
        run(ddpm, "nll", "--checkpoint", checkpoint, "--data", images_dir, "--seed", seed,
            "--variance", variance, "--json", out, "--overwrite", "--device", "cpu",
            "--threads", "2")
        ours = json.loads(out.read_text())
        worst = 0.0
        for k, theirs in enumerate(reference[variance]):
            mine = ours["per_image"][k]["bits_per_dim"]
            worst = max(worst, abs(theirs - mine))
            print(f"  {name} {variance} image {k}: ours {mine:.6f}, float64 reference {theirs:.6f}")
        status = "ok  " if worst <= TOLERANCE else "FAIL"
        print(f"{status} {name} {variance}: max |difference| {worst:.2e} bits/dim")
        ok &= worst <= TOLERANCE
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ddpm", type=pathlib.Path, required=True)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)  # a fresh run directory for ddpm train
    work.mkdir(parents=True)
    torch.set_num_threads(2)
    ok = True
    shipped_images = write_images(work / "shipped_images", 2, 28)
    ok &= check(args.ddpm, work, "shipped", MODEL, work / "shipped_images", shipped_images,
                ("fixed_large", "fixed_small"), 3)
    learned_run = train_learned_model(args.ddpm, work)
    small_images = write_images(work / "small_images", 3, 8)
    ok &= check(args.ddpm, work, "learned", learned_run, work / "small_images", small_images,
                ("learned",), 4)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
