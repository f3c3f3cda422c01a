#!/usr/bin/env python3
"""scripts/plot_metrics.py end to end: a metrics.jsonl as ddpm train writes it (training lines
and evaluation lines) becomes one PNG with a panel per quantity; an existing PNG is kept unless
--overwrite; a corrupt line is an error naming the file and line."""
import json
import os
import struct
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "plot_metrics.py")


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


def main():
    with tempfile.TemporaryDirectory() as run_dir:
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
            for step in range(10, 110, 10):
                f.write(json.dumps({"step": step, "loss": 1.0 / step, "lr": 1e-3,
                                    "grad_norm": 2.0, "ema_decay": 1 - step ** -0.75,
                                    "images_per_s": 50.0, "wall_time_s": step}) + "\n")
                if step % 50 == 0:
                    f.write(json.dumps({"step": step, "fid": 100.0 / step, "kid_mean": 0.1,
                                        "eval_samples": 64}) + "\n")
        done = run(run_dir)
        assert done.returncode == 0, done.stderr
        out = os.path.join(run_dir, "metrics.png")
        width, height = png_size(out)
        # 7 x 2.2 inches per panel at 100 dpi: loss, lr, grad norm, EMA decay and FID.
        assert (width, height) == (700, 1100), (width, height)

        kept = run(run_dir)
        assert kept.returncode != 0 and "--overwrite" in kept.stderr, kept.stderr
        assert run(run_dir, "--overwrite").returncode == 0

        # An evaluation with bits/dim (train.eval_nll_images) adds a sixth panel.
        with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": 110, "fid": 0.8, "eval_samples": 64,
                                "bits_per_dim": 3.9, "bits_per_dim_se": 0.1,
                                "nll_images": 16}) + "\n")
        assert run(run_dir, "--overwrite").returncode == 0
        assert png_size(out) == (700, 1320), png_size(out)

        with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
            f.write("{not json\n")
        broken = run(run_dir, "--out", os.path.join(run_dir, "other.png"))
        assert broken.returncode != 0 and "metrics.jsonl:14" in broken.stderr, broken.stderr
        assert not os.path.exists(os.path.join(run_dir, "other.png"))

        missing = run(os.path.join(run_dir, "nothing"))
        assert missing.returncode != 0 and "no such file" in missing.stderr
    print("plot_metrics: ok")


if __name__ == "__main__":
    main()
