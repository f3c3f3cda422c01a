#!/usr/bin/env python3
"""Improved DDPM on Fashion-MNIST, measured (docs/BENCHMARKS.md, docs/LIKELIHOOD.md): the same
network trained from scratch for the same steps (so the same CPU time, which is recorded) with
    simple             L_simple (the shipped recipe: v prediction, min-SNR-5, fixed variances)
    hybrid             L_hybrid = L_simple + 0.001 L_vlb with learned variances
    hybrid_loss_aware  the same with importance-sampled timesteps (train.timestep_sampling)
then, for each, the bound in bits/dim on --nll-images test images (`ddpm nll`, the unbiased
estimate from --nll-timesteps timesteps per image), and sample quality with
scripts/model_quality.py (FID, KID, precision/recall and the per-class shares in the project's
classifier features; mirrored shoes) for dpmpp_2m 10 steps and ancestral ddpm at 25, 50 and 100
respaced steps (with learned variances for the learned-variance models, and for hybrid also with
fixed_large ones). Trained runs
and finished measurements are kept and skipped when run again. Writes OUT/summary.json.

    .venv/bin/python dev/likelihood_study.py --out runs/likelihood [--steps 1500]
"""
import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from model_quality import run  # noqa: E402  (runs a command into a log, exits on failure)

VARIANTS = {
    "simple": [],
    "hybrid": ["model.learn_variance=true", "train.loss=hybrid"],
    "hybrid_loss_aware": ["model.learn_variance=true", "train.loss=hybrid",
                          "train.timestep_sampling=loss_aware"],
}


def train(args, name, sets):
    run_dir = args.out / name
    timing_file = args.out / f"{name}.train_time.json"
    if timing_file.exists():
        return json.loads(timing_file.read_text())
    command = [args.ddpm, "train", "--config", ROOT / "configs/fashion_mnist_cpu.json",
               "--data", ROOT / "data/fashion-mnist/train", "--out", run_dir,
               "--threads", args.threads, "--set", f"train.steps={args.steps}",
               "--set", "train.sample_every=0", "--set", f"train.checkpoint_every={args.steps}"]
    for assignment in sets:
        command += ["--set", assignment]
    def cpu_seconds():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, cpu_start = time.monotonic(), cpu_seconds()
    args.out.mkdir(parents=True, exist_ok=True)
    run(command, args.out / f"{name}.train.log")
    timing = {"seconds": time.monotonic() - start, "cpu_seconds": cpu_seconds() - cpu_start,
              "steps": args.steps}
    timing_file.write_text(json.dumps(timing) + "\n")
    return timing


def nll(args, name):
    out = args.out / f"{name}.nll.json"
    if not out.exists():
        run([args.ddpm, "nll", "--checkpoint", args.out / name, "--data",
             ROOT / "data/fashion-mnist/test", "--num", args.nll_images, "--timesteps",
             args.nll_timesteps, "--batch", 250, "--json", out, "--threads", args.threads],
            args.out / f"{name}.nll.log")
    result = json.loads(out.read_text())
    return {"bits_per_dim": result["bits_per_dim"], "standard_error": result["standard_error"],
            "variance": result["variance"], "seconds": result["seconds"]}


def quality(args, name, label, num, sampler, steps, spacing, variance=None):
    out = args.out / f"{name}.{label}"
    summary = out / "summary.json"
    if not summary.exists():
        command = [sys.executable, ROOT / "scripts/model_quality.py", "--checkpoint",
                   args.out / name, "--out", out, "--num", num, "--sampler", sampler,
                   "--steps", steps, "--spacing", spacing, "--ddpm", args.ddpm,
                   "--threads", args.threads]
        if variance:
            command += ["--variance", variance]
        run(command, args.out / f"{name}.{label}.log")
    samples = json.loads(summary.read_text())["samples"]
    return {key: samples[key] for key in ("fid", "kid_mean", "precision", "recall",
                                          "class_share_min", "class_share_max")} | {
        "shoes_facing_right": samples["orientation"]["all_shoes"]["right_template"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--num", type=int, default=1000, help="samples of dpmpp_2m's figures")
    parser.add_argument("--num-ddpm", type=int, default=300,
                        help="samples of each ancestral ddpm figure (25 to 100 steps each)")
    parser.add_argument("--nll-images", type=int, default=1000)
    parser.add_argument("--nll-timesteps", type=int, default=20)
    parser.add_argument("--ddpm-steps", default="25,50,100",
                        type=lambda text: [int(value) for value in text.split(",")])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--ddpm", default=str(ROOT / "build/ddpm"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    summary_file = args.out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    names = args.variants.split(",")
    for name in names:
        summary.setdefault(name, {})["train"] = train(args, name, VARIANTS[name])
        summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    if args.train_only:
        return 0
    for name in names:
        result = summary[name]
        result["nll"] = nll(args, name)
        summary_file.write_text(json.dumps(summary, indent=2) + "\n")
        result["dpmpp_2m_10"] = quality(args, name, "dpmpp_2m_10", args.num, "dpmpp_2m", 10,
                                        "karras")
        learned = name != "simple"
        for steps in args.ddpm_steps:
            result[f"ddpm_{steps}"] = quality(args, name, f"ddpm_{steps}", args.num_ddpm, "ddpm",
                                              steps, "uniform", "learned" if learned else None)
            if name == "hybrid":  # the same network with fixed variances
                result[f"ddpm_{steps}_fixed_large"] = quality(
                    args, name, f"ddpm_{steps}_fixed_large", args.num_ddpm, "ddpm", steps,
                    "uniform", "fixed_large")
            summary_file.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
