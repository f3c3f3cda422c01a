#!/usr/bin/env python3
"""The project's evaluation sees mirror images (issue: a model drew Fashion-MNIST's shoes facing
the wrong way, and an overall FID on features that ignore orientation did not show it).

Makes the default Fashion-MNIST feature network exactly as scripts/train_feature_net.py does
for `ddpm eval` (same seed, epochs and threads), then measures with scripts/model_quality.py
--references: 2,000 training images against the 10,000 test images as they are, all mirrored,
and half mirrored. Asserts:
  - FID of the mirrored set >= 10x, and of the half-mirrored set >= 3x, the real-vs-real floor;
  - ddpm eval --per-class labels the real set with the classifier: every class's share within
    0.10 +- 0.03 (4.5 binomial standard deviations at 2,000 images), per-class FIDs present;
  - the orientation measures: at most 5 % of the test split's shoes face right by the template
    measure and by the classifier's mirrored head, at least 95 % of their mirror images do.
Needs Debian's dataset-fashion-mnist (scripts/setup.sh --test installs it).
"""
import argparse
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(command):
    print("+", " ".join(map(str, command)), flush=True)
    subprocess.run([str(c) for c in command], check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ddpm", required=True)
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    data = args.workdir / "fashion-mnist"
    if not (data / "test").exists():
        run([python, ROOT / "scripts/prepare_fashion_mnist.py", "--output", data])
    net = args.workdir / "fashion_mnist.pt"
    if not net.exists():
        run([python, ROOT / "scripts/train_feature_net.py", "--output", net])
    out = args.workdir / "references"
    run([python, ROOT / "scripts/model_quality.py", "--references", "--out", out, "--num", 2000,
         "--real", data / "test", "--train", data / "train", "--features", net,
         "--ddpm", args.ddpm])
    summary = json.loads((out / "summary.json").read_text())
    failures = []

    def check(condition, message):
        print(("ok   " if condition else "FAIL ") + message)
        if not condition:
            failures.append(message)

    floor = summary["real"]["fid"]
    for name, factor in (("mirrored", 10), ("half", 3)):
        fid = summary[name]["fid"]
        check(fid >= factor * floor,
              f"FID of {name} real images {fid:.2f} >= {factor} x real-vs-real {floor:.2f}")
    for name, values in summary["real"]["per_class"].items():
        check(0.07 <= values["fraction"] <= 0.13,
              f"class {name}: share {values['fraction']:.3f} of real images in [0.07, 0.13]")
        check(values["fid"] is not None, f"class {name}: a per-class FID ({values['fid']})")
    for key, low, high in (("test_orientation", 0.0, 0.05),
                           ("test_mirrored_orientation", 0.95, 1.0)):
        shoes = summary[key]["all_shoes"]
        for measure in ("right_template", "right_classifier"):
            check(low <= shoes[measure] <= high,
                  f"{key}: {measure} {shoes[measure]:.4f} of {shoes['count']} shoes "
                  f"in [{low}, {high}]")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
