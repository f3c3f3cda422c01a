#!/usr/bin/env python3
"""Quality per network evaluation: samples a checkpoint with every sampler at a few NFE budgets,
measures each set with `ddpm eval` (FID, KID, precision/recall on the Fashion-MNIST classifier's
features by default) and prints a markdown table with the images/s of each run.

    python3 dev/sampler_quality.py --checkpoint runs/demo-tiny --real data/fashion-mnist/test \\
        --out runs/sampler-quality [--num 2000] [--nfe 10,20,50] [--reference-num 2000]
        [--samplers ddpm,ddim,...] [--threads N] [--ddpm build/ddpm]

Steps per NFE budget: N = NFE for every sampler but heun, which costs 2N - 1 (N = (NFE + 1) / 2,
rounded down). The reference row, run last, is ddpm with T steps. Spacing: karras for the sigma-space
samplers (euler, euler_ancestral, heun, dpmpp_*), uniform for ddpm and ddim. Real features are computed once (--save-real-stats). Every run keeps its images,
`eval.json` and log under --out; a finished run is reused when its eval.json exists.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

SPACING = {"ddpm": "uniform", "ddim": "uniform", "euler": "karras", "euler_ancestral": "karras",
           "heun": "karras", "dpmpp_2m": "karras", "dpmpp_2m_sde": "karras"}


def steps_for(sampler, nfe):
    return max(1, (nfe + 1) // 2) if sampler == "heun" else nfe


def run(command, log):
    with open(log, "w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, command))}; see {log}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--real", required=True, help="real image folder or stats file")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--reference-num", type=int, default=None,
                        help="images for the ddpm T-step reference (default: --num)")
    parser.add_argument("--nfe", default="10,20,50")
    parser.add_argument("--samplers", default=",".join(SPACING))
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=1000, help="T of the checkpoint")
    parser.add_argument("--ddpm", default=str(pathlib.Path(__file__).resolve().parent.parent
                                              / "build" / "ddpm"))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real = pathlib.Path(args.real)
    if real.is_dir():
        stats = out / "real.stats"
        if not stats.exists():
            run([args.ddpm, "eval", "--real", str(real), "--generated", str(real),
                 "--save-real-stats", str(stats), "--metrics", "fid", "--threads",
                 str(args.threads)], out / "real_stats.log")
        real = stats

    runs = []
    for nfe in map(int, args.nfe.split(",")):
        for sampler in args.samplers.split(","):
            runs.append((sampler, steps_for(sampler, nfe), args.num))
    runs.append(("ddpm", args.timesteps, args.reference_num or args.num))  # the reference, last
    rows = []
    for sampler, steps, num in runs:
        spacing = SPACING[sampler]
        name = f"{sampler}_{spacing}_{steps}_{num}"
        folder = out / name
        result = folder / "eval.json"
        if not result.exists():
            start = time.monotonic()
            run([args.ddpm, "sample", "--checkpoint", args.checkpoint, "--out", str(folder / "images"),
                 "--num", str(num), "--batch", str(args.batch), "--sampler", sampler,
                 "--steps", str(steps), "--spacing", spacing, "--threads", str(args.threads),
                 "--overwrite"], folder.with_suffix(".sample.log"))
            seconds = time.monotonic() - start
            run([args.ddpm, "eval", "--real", str(real), "--generated", str(folder / "images"),
                 "--json", str(folder / "eval_raw.json"), "--threads", str(args.threads),
                 "--overwrite"], folder.with_suffix(".eval.log"))
            figures = json.loads((folder / "eval_raw.json").read_text())
            figures.update(sampler=sampler, steps=steps, spacing=spacing, num=num,
                           sample_seconds=seconds, images_per_s=num / seconds)
            result.write_text(json.dumps(figures, indent=1) + "\n")
        figures = json.loads(result.read_text())
        nfe = 2 * steps - 1 if sampler == "heun" else steps
        rows.append((sampler, spacing, steps, nfe, figures))
        print(f"{sampler:16} {steps:5} steps  NFE {nfe:5}  FID {figures['fid']:8.3f}  "
              f"{figures['images_per_s']:8.1f} images/s", flush=True)

    print("\n| sampler | spacing | steps | NFE | images | FID | KID | precision | recall | images/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for sampler, spacing, steps, nfe, f in rows:
        print(f"| {sampler} | {spacing} | {steps} | {nfe} | {f['num']} | {f['fid']:.2f} | "
              f"{f['kid_mean']:.3f} ± {f['kid_std']:.3f} | {f['precision']:.3f} | "
              f"{f['recall']:.3f} | {f['images_per_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
