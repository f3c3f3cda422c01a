#!/usr/bin/env python3
"""Which training levers pay: trains one config with each set of overrides for the same wall-clock
budget, samples every run's EMA model, scores the samples against real statistics with
`ddpm eval`, and prints a Markdown table (also written to OUT/table.md and OUT/results.json).

    python3 dev/recipe_sweep.py --config configs/tiny.json --data data/fashion-mnist/train \
        --real runs/recipe/test.stats --out runs/recipe --minutes 5 --parallel 2 --threads 1

Each run is stopped by SIGINT when its budget is spent (ddpm train then writes a checkpoint), so
a lever that makes a step slower pays for it in steps. Runs whose results exist are not run again;
delete OUT/NAME to redo one. --only NAME[,NAME] picks runs; --list prints them.
"""
import argparse
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

# The recipe every lever changes one thing of, whatever --config trains (configs/tiny.json now
# trains v prediction with min-SNR): eps prediction, L_simple, EMA warm-up.
BASE = ["diffusion.prediction=eps", "train.loss_weighting=none", "train.ema_warmup=true"]

# name -> (what it changes, overrides on top of BASE, --config and --set).
LEVERS = {
    "base": ("the base recipe", []),
    "no_ema_warmup": ("EMA without warm-up, decay 0.999",
                      ["train.ema_warmup=false", "train.ema_decay=0.999"]),
    "v": ("v prediction", ["diffusion.prediction=v"]),
    "x0": ("x0 prediction", ["diffusion.prediction=x0"]),
    "min_snr": ("min-SNR-5 weighting", ["train.loss_weighting=min_snr"]),
    "v_min_snr": ("v prediction + min-SNR-5", ["diffusion.prediction=v",
                                               "train.loss_weighting=min_snr"]),
    "width32": ("base_channels 32", ["model.base_channels=32"]),
    "depth2": ("num_res_blocks 2", ["model.num_res_blocks=2"]),
    "t500": ("T = 500", ["diffusion.timesteps=500"]),
    "lr2e-3": ("lr 2e-3", ["train.lr=0.002"]),
    "lr5e-4": ("lr 5e-4", ["train.lr=0.0005"]),
    "batch64": ("batch 64", ["train.batch_size=64"]),
    "batch16": ("batch 16", ["train.batch_size=16"]),
}


def last_step(run_dir):
    """The step of the run's newest checkpoint (written when the budget stopped it)."""
    try:
        with open(os.path.join(run_dir, "checkpoints", "latest")) as f:
            name = f.read().strip()  # step_000001234.pt
        return int(name.split("_")[1].split(".")[0])
    except (FileNotFoundError, IndexError, ValueError):
        return 0


def run_lever(name, args, common):
    description, overrides = LEVERS[name]
    run_dir = os.path.join(args.out, name)
    result_file = os.path.join(run_dir, "result.json")
    if os.path.exists(result_file):
        with open(result_file) as f:
            result = json.load(f)
        result["steps"] = last_step(run_dir)
        return result
    if os.path.exists(run_dir):
        raise SystemExit(f"{run_dir} exists without a result.json (an interrupted sweep?): "
                         "delete it to run that lever again")
    settings = common + overrides
    train = [args.ddpm, "train", "--config", args.config, "--data", args.data, "--out", run_dir,
             "--threads", str(args.threads)]
    for setting in settings:
        train += ["--set", setting]
    os.makedirs(args.out, exist_ok=True)
    log = open(os.path.join(args.out, name + ".log"), "w")
    start = time.monotonic()
    process = subprocess.Popen(train, stdout=log, stderr=subprocess.STDOUT)
    try:
        process.wait(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # finishes the step, writes a checkpoint
        process.wait(timeout=300)
    train_seconds = time.monotonic() - start
    if process.returncode not in (0, 130):
        raise SystemExit(f"{name}: ddpm train failed ({process.returncode}); see {log.name}")
    samples = os.path.join(run_dir, "eval-samples")
    sample = [args.ddpm, "sample", "--checkpoint", run_dir, "--out", samples, "--num",
              str(args.num), "--batch", "500", "--threads", str(args.threads)]
    if args.sampler:
        sample += ["--sampler", args.sampler, "--steps", str(args.steps), "--spacing",
                   args.spacing]
    subprocess.run(sample, check=True, stdout=log, stderr=subprocess.STDOUT)
    scores = os.path.join(run_dir, "eval.json")
    subprocess.run([args.ddpm, "eval", "--real", args.real, "--generated", samples, "--json",
                    scores, "--threads", str(args.threads)], check=True, stdout=log,
                   stderr=subprocess.STDOUT)
    with open(scores) as f:
        metrics = json.load(f)
    result = {"name": name, "lever": description, "overrides": settings,
              "steps": last_step(run_dir), "train_minutes": train_seconds / 60,
              "fid": metrics["fid"], "kid_mean": metrics["kid_mean"],
              "kid_std": metrics["kid_std"], "precision": metrics["precision"],
              "recall": metrics["recall"], "num": args.num}
    with open(result_file, "w") as f:
        json.dump(result, f, indent=2)
    return result


def table(results):
    rows = ["| run | lever | steps | train min | FID | KID | precision | recall |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r['name']} | {r['lever']} | {r['steps']} | {r['train_minutes']:.1f} | "
                    f"{r['fid']:.2f} | {r['kid_mean']:.3f} ± {r['kid_std']:.3f} | "
                    f"{r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join(rows)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(root, "configs", "tiny.json"))
    parser.add_argument("--data", default=os.path.join(root, "data", "fashion-mnist", "train"))
    parser.add_argument("--real", help="real images or a stats file of ddpm eval")
    parser.add_argument("--out", default=os.path.join(root, "runs", "recipe"))
    parser.add_argument("--ddpm", default=os.path.join(root, "build", "ddpm"))
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per run")
    parser.add_argument("--parallel", type=int, default=2, help="runs at once")
    parser.add_argument("--threads", type=int, default=1, help="LibTorch threads per run")
    parser.add_argument("--num", type=int, default=2000, help="samples per run")
    parser.add_argument("--sampler", help="sampler for the evaluation (default: the config's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--spacing", default="karras")
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument("--only", help="comma-separated run names")
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    args = parser.parse_args()
    if args.list:
        for name, (description, overrides) in LEVERS.items():
            print(f"{name:14s} {description}: {' '.join(overrides) or '-'}")
        return 0
    if not args.real:
        parser.error("--real is required (a folder of real images or a stats file)")
    names = list(LEVERS) if not args.only else args.only.split(",")
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; --list prints them")
    common = ["train.steps=100000000", "train.sample_every=0", "train.checkpoint_every=100000000",
              "train.log_every=100"] + BASE + args.set
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda n: run_lever(n, args, common), names))
    text = table(results)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
