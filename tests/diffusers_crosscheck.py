#!/usr/bin/env python3
"""Cross-checks our UNet against diffusers' UNet2DModel, an independent implementation of the
same DDPM network (google/ddpm-cifar10-32 layout).

For each case the C++ exporter writes random weights, an input and our output; this script
loads the weights into UNet2DModel with strict name and shape checking (so our parameter
names and shapes are exactly diffusers'), runs the same input and compares the outputs.
It also checks that Python's torch.load reads our weights file as a plain dict of tensors.

Tolerance: outputs agree to 1e-4 of their largest magnitude; float32 reordering of the same
arithmetic (and a different attention kernel) stays far below that.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

import torch

try:
    from diffusers import UNet2DModel
except ImportError:
    sys.exit("diffusers is not installed in this Python: run `pip install diffusers` "
             "(scripts/setup.sh --test does it in the project's virtual environment)")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "dev"))
import bench_diffusers as peer  # noqa: E402

CASES = {
    # The CIFAR-10 layout, narrower: attention at 16x16 only, 4 levels, SAME-padded downsampling.
    "rgb_cifar_layout": {
        "data": {"image_size": 32, "channels": 3},
        "model": {"base_channels": 32, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
                  "attention_resolutions": [16], "attention_heads": 1, "norm_groups": 32,
                  "dropout": 0.1},
    },
    # Grayscale, non-square, two attention heads, one res block per level.
    "gray_nonsquare_two_heads": {
        "data": {"image_size": [16, 32], "channels": 1},
        "model": {"base_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": 1,
                  "attention_resolutions": [8], "attention_heads": 2, "norm_groups": 16,
                  "dropout": 0.0},
    },
    # The options of diffusers' UNet2DModel defaults (train_unconditional.py's models): cos
    # before sin, no frequency shift, GroupNorm eps 1e-5, symmetric downsampling padding, and
    # heads of 8 channels (4 heads at width 32, 8 at 64).
    "diffusers_defaults": {
        "data": {"image_size": 16, "channels": 3},
        "model": {"base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 2,
                  "attention_resolutions": [8], "attention_head_channels": 8,
                  "norm_groups": 8, "dropout": 0.0, "norm_eps": 1e-5,
                  "time_embedding_order": "cos_sin", "time_embedding_shift": 0,
                  "downsample_padding": "symmetric"},
    },
}


def diffusers_model(config):
    # The mapping from our config to UNet2DModel lives in the benchmark peer; this test is what
    # proves it (same names, shapes and outputs).
    return peer.diffusers_model(config, UNet2DModel).eval()


def check(name, config, exporter, workdir):
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(config))
    subprocess.run([exporter, str(config_file), str(folder), "7"], check=True)

    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert isinstance(weights, dict) and all(torch.is_tensor(v) for v in weights.values())
    case = torch.load(folder / "case.pt", weights_only=True)

    model = diffusers_model(config)
    model.load_state_dict(weights, strict=True)
    count = sum(p.numel() for p in model.parameters())
    assert count == case["parameters"], f"{name}: diffusers has {count} parameters, we have {case['parameters']}"

    with torch.no_grad():
        theirs = model(case["x"], case["t"]).sample
    ours = case["eps"]
    scale = theirs.abs().max().item()
    error = (theirs - ours).abs().max().item()
    print(f"{name}: {count} parameters, max |ours - diffusers| = {error:.3e} (output scale {scale:.3f})")
    assert scale > 1e-3, f"{name}: the output is ~0, the comparison would prove nothing"
    assert error <= 1e-4 * scale, f"{name}: outputs differ by {error} (scale {scale})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exporter", required=True, help="path to the export_unet_case binary")
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    for name, config in CASES.items():
        check(name, config, args.exporter, args.workdir)
    print(f"diffusers cross-check: all {len(CASES)} cases agree")


if __name__ == "__main__":
    main()
