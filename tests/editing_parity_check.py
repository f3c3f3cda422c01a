#!/usr/bin/env python3
"""DDIM inversion against diffusers: `ddpm invert` of an image with the shipped Fashion-MNIST
model (a v-prediction model) gives the x_T of diffusers' DDIMInverseScheduler loop on the same
model (exported with `ddpm export`), the same image and the same timesteps (leading spacing,
10 and 25 steps), within 1e-4 (float32, absolute); and that x_T decoded by `ddpm sample --noise`
with DDIM gives diffusers' DDIMScheduler decoding of it, 8-bit, within one level.
"""
import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np
import torch

try:
    from diffusers import DDIMInverseScheduler, DDIMScheduler, UNet2DModel
    from PIL import Image
except ImportError:
    sys.exit("diffusers is not installed in this Python: run `pip install diffusers` "
             "(scripts/setup.sh --test does it in the project's virtual environment)")

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "data/models/fashion_mnist_cpu.pt"
TOLERANCE = 1e-4


def run(*command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{result.stdout}{result.stderr}")


def test_image(path):
    y, x = np.mgrid[0:28, 0:28]
    d = np.hypot((x - 12.6) / 9.0, (y - 16.8) / 5.0)
    pixels = np.where(d < 1.0, 200 - 60 * d, 10).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return torch.from_numpy(pixels).float().div(127.5).sub(1).reshape(1, 1, 28, 28)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ddpm", type=pathlib.Path, required=True)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    folder = work / "exported"
    run(args.ddpm, "export", "--checkpoint", MODEL, "--out", folder, "--overwrite")
    unet = UNet2DModel.from_pretrained(folder / "unet").eval()
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    image = test_image(work / "image.png")
    failures = 0
    for steps in (10, 25):
        noise_file = work / f"x_T_{steps}.pt"
        run(args.ddpm, "invert", "--checkpoint", MODEL, "--images", work / "image.png", "--steps",
            steps, "--spacing", "leading", "--out", noise_file, "--overwrite", "--threads", 2)
        ours = torch.load(noise_file, weights_only=True)
        inverse = DDIMInverseScheduler.from_config(scheduler_config, clip_sample=False,
                                                   timestep_spacing="leading",
                                                   set_alpha_to_one=True)
        inverse.set_timesteps(steps)
        x = image.clone()
        with torch.no_grad():
            for t in inverse.timesteps:
                x = inverse.step(unet(x, t).sample, t, x).prev_sample
        error = (ours - x).abs().max().item()
        print(f"{steps} steps: x_T max |ours - diffusers| = {error:.2e} "
              f"(|x_T| max {x.abs().max().item():.2f})")
        failures += error > TOLERANCE

        decoded = work / f"decoded_{steps}"
        run(args.ddpm, "sample", "--checkpoint", MODEL, "--noise", noise_file, "--sampler", "ddim",
            "--steps", steps, "--spacing", "leading", "--num", 1, "--out", decoded, "--overwrite",
            "--threads", 2)
        forward = DDIMScheduler.from_config(scheduler_config, clip_sample=True,
                                            timestep_spacing="leading", set_alpha_to_one=True)
        forward.set_timesteps(steps)
        y = ours.clone()
        with torch.no_grad():
            for t in forward.timesteps:
                y = forward.step(unet(y, t).sample, t, y, use_clipped_model_output=True).prev_sample
        theirs = y.clamp(-1, 1).add(1).mul(127.5).round().squeeze().numpy()
        mine = np.asarray(Image.open(decoded / "sample_00000.png").convert("L")).astype(float)
        levels = np.abs(mine - theirs).max()
        print(f"{steps} steps: DDIM decoding of it, max 8-bit difference {levels:.0f}")
        failures += levels > 1
    if failures:
        sys.exit(f"{failures} check(s) failed")
    print("ok")


if __name__ == "__main__":
    main()
