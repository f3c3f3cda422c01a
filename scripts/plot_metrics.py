#!/usr/bin/env python3
"""Plots a training run's metrics.jsonl: loss, learning rate, gradient norm, EMA decay and,
when the run evaluated (train.eval_every), FID against step, as one PNG next to the file.

    python3 scripts/plot_metrics.py RUN_DIR [--out FILE] [--overwrite]

Needs matplotlib (scripts/setup.sh --test installs it into .venv).
"""
import argparse
import json
import math
import os
import sys


def read_metrics(path):
    """The training lines and the evaluation lines of a metrics.jsonl, each sorted by step."""
    train, evaluations = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SystemExit(f"{path}:{number}: not a JSON line ({error}); is this a "
                                 "metrics.jsonl of ddpm train?")
            if not isinstance(record, dict) or "step" not in record:
                raise SystemExit(f"{path}:{number}: a line without a step")
            (evaluations if "fid" in record else train).append(record)
    if not train and not evaluations:
        raise SystemExit(f"{path}: holds no metrics yet (the run logs every train.log_every "
                         "steps)")
    train.sort(key=lambda r: r["step"])
    evaluations.sort(key=lambda r: r["step"])
    return train, evaluations


def series(records, key):
    points = [(r["step"], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run directory of ddpm train (or its metrics.jsonl)")
    parser.add_argument("--out", help="the PNG to write (default: RUN_DIR/metrics.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args()

    path = args.run_dir
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: no such file; give a run directory of ddpm train")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), "metrics.png")
    if os.path.exists(out) and not args.overwrite:
        raise SystemExit(f"{out} exists; pass --overwrite to replace it, or choose --out")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("matplotlib is missing: pip install matplotlib (scripts/setup.sh "
                         "--test installs it into .venv)")

    train, evaluations = read_metrics(path)
    panels = [("loss", "loss", True), ("lr", "learning rate", False),
              ("grad_norm", "gradient norm (before clipping)", True),
              ("ema_decay", "EMA decay", False)]
    panels = [p for p in panels if series(train, p[0])[0]]
    with_nll = bool(series(evaluations, "bits_per_dim")[0])
    rows = len(panels) + (1 if evaluations else 0) + (1 if with_nll else 0)
    figure, axes = plt.subplots(rows, 1, figsize=(7, 2.2 * rows), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for axis, (key, label, log_scale) in zip(axes, panels):
        steps, values = series(train, key)
        axis.plot(steps, values, linewidth=1)
        axis.set_ylabel(label)
        if log_scale and min(values) > 0:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    if evaluations:
        axis = axes[len(panels)]
        steps, values = series(evaluations, "fid")
        samples = evaluations[-1].get("eval_samples", "?")
        axis.plot(steps, values, marker="o", linewidth=1)
        axis.set_ylabel(f"FID ({samples} samples)")
        axis.grid(alpha=0.3)
    if with_nll:
        axis = axes[-1]
        steps, values = series(evaluations, "bits_per_dim")
        images = evaluations[-1].get("nll_images", "?")
        axis.plot(steps, values, marker="o", linewidth=1, color="tab:green")
        axis.set_ylabel(f"bits/dim ({images} images)")
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    figure.suptitle(os.path.basename(os.path.dirname(os.path.abspath(path))) or path)
    figure.tight_layout()
    temporary = out + ".tmp.png"
    figure.savefig(temporary, dpi=100)
    os.replace(temporary, out)  # never a half-written PNG under the final name
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
