#!/usr/bin/env python3
"""The students of a `ddpm distill` run beside their teacher at the same numbers of network
evaluations: for each N of --steps, the N-step student (RUN/rounds/steps_00N, on its own ddim
grid), the teacher with ddim (trailing spacing, the students' grids) and with dpmpp_2m (karras),
then the teacher's dpmpp_2m at 10 steps. Each set is measured by scripts/model_quality.py (FID,
KID, precision/recall in the project's classifier features against the test split, class
shares, shoes facing right); prints a markdown table with the sampling speed of each run.

    .venv/bin/python dev/distill_quality.py --run runs/distill \\
        --teacher data/models/fashion_mnist_cpu.pt --out runs/distill-quality \\
        [--steps 8,4,2,1] [--num 2000] [--threads 2]

A finished set (its summary.json exists) is reused.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def measure(out, checkpoint, args, sampler=None, steps=None, spacing=None):
    summary_file = out / "summary.json"
    if not summary_file.exists():
        command = [sys.executable, ROOT / "scripts/model_quality.py", "--checkpoint", checkpoint,
                   "--out", out, "--num", args.num, "--threads", args.threads]
        for option, value in (("sampler", sampler), ("steps", steps), ("spacing", spacing)):
            if value is not None:
                command += [f"--{option}", value]
        result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"failed: {' '.join(map(str, command))}\n{result.stdout}{result.stderr}")
    summary = json.loads(summary_file.read_text())["samples"]
    speed = re.search(r"\(([0-9.]+) images/s", (out / "sample.log").read_text())
    summary["images_per_s"] = float(speed.group(1)) if speed else float("nan")
    return summary


def row(name, sampler, steps, summary):
    shoes = summary["orientation"]["all_shoes"]["right_template"]
    return (f"| {name} | {sampler} | {steps} | {summary['fid']:.2f} | "
            f"{summary['kid_mean']:.3f} ± {summary['kid_std']:.3f} | {summary['precision']:.3f} | "
            f"{summary['recall']:.3f} | {summary['class_share_min'] * 100:.1f}–"
            f"{summary['class_share_max'] * 100:.1f} % | {shoes * 100:.1f} % | "
            f"{summary['images_per_s']:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=pathlib.Path, help="a ddpm distill run")
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--steps", default="8,4,2,1")
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = ["| model | sampler | steps (NFE) | FID | KID | precision | recall | class shares | "
            "shoes right | images/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for steps in [int(s) for s in args.steps.split(",")]:
        student = args.run / "rounds" / f"steps_{steps:03d}"
        if not student.exists():
            sys.exit(f"{student} does not exist: the run has no {steps}-step student")
        rows.append(row("student", "ddim (its grid)", steps,
                        measure(args.out / f"student_{steps}", student, args)))
        rows.append(row("teacher", "ddim, trailing", steps,
                        measure(args.out / f"teacher_ddim_{steps}", args.teacher, args, "ddim",
                                steps, "trailing")))
        rows.append(row("teacher", "dpmpp_2m, karras", steps,
                        measure(args.out / f"teacher_dpmpp_{steps}", args.teacher, args,
                                "dpmpp_2m", steps, "karras")))
        print("\n".join(rows[-3:]), flush=True)
    rows.append(row("teacher", "dpmpp_2m, karras", 10,
                    measure(args.out / "teacher_dpmpp_10", args.teacher, args, "dpmpp_2m", 10,
                            "karras")))
    table = "\n".join(rows)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
