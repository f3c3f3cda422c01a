#!/usr/bin/env python3
"""Class-conditional quality per guidance scale: samples a class-conditional checkpoint at each
guidance W (every class in turn, one subfolder per class), measures each set with
`ddpm eval --per-class` against the real class folders, and scores every generated image with
the Fashion-MNIST classifier of scripts/train_feature_net.py (its `classify` method): the
fraction classified as the class it was asked for. Prints a markdown table per W (overall and
mean per-class FID, accuracy) and one per class at each W.

    python3 scripts/class_quality.py --checkpoint runs/fashion_mnist_cond \\
        --real data/fashion-mnist/test --out runs/class-quality [--num 2000]
        [--guidance 0,1,2,3] [--classifier data/feature-nets/fashion_mnist.pt]
        [--threads N] [--ddpm build/ddpm]

Every run keeps its images, eval.json and logs under --out; a run whose eval.json exists is
reused.
"""
import argparse
import json
import pathlib
import subprocess
import sys

import numpy
import torch
from PIL import Image


def run(command, log):
    with open(log, "w") as out:
        result = subprocess.run([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, command))}; see {log}")


def accuracy_per_class(classifier, folder, class_names):
    """{class name: (correct, total)} for the images of each class subfolder."""
    result = {}
    for index, name in enumerate(class_names):
        files = sorted((folder / name).glob("*.png"))
        if not files:
            continue
        pixels = numpy.stack([numpy.asarray(Image.open(f).convert("L")) for f in files])
        images = torch.from_numpy(pixels).float().div(127.5).sub(1.0)
        with torch.no_grad():
            predicted = classifier.classify(images.unsqueeze(1)).argmax(1)
        result[name] = (int((predicted == index).sum()), len(files))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--real", required=True, help="real images in class subfolders")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--guidance", default="0,1,2,3")
    parser.add_argument("--classifier", default="data/feature-nets/fashion_mnist.pt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ddpm", default="build/ddpm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classifier = torch.jit.load(args.classifier)
    if not hasattr(classifier, "classify"):
        sys.exit(f"{args.classifier} has no classify method; make it again with "
                 "python3 scripts/train_feature_net.py --overwrite")
    class_names = sorted(p.name for p in pathlib.Path(args.real).iterdir() if p.is_dir())
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for w in args.guidance.split(","):
        folder = args.out / f"w{w}"
        evaluation = folder.with_suffix(".eval.json")
        if not evaluation.exists():
            run([args.ddpm, "sample", "--checkpoint", args.checkpoint, "--out", folder,
                 "--num", args.num, "--batch", args.batch, "--guidance", w, "--seed", 1,
                 "--threads", args.threads, "--overwrite"], folder.with_suffix(".sample.log"))
            run([args.ddpm, "eval", "--real", args.real, "--generated", folder, "--per-class",
                 "--features", args.classifier, "--json", evaluation, "--overwrite",
                 "--threads", args.threads], folder.with_suffix(".eval.log"))
        result = json.loads(evaluation.read_text())
        accuracy = accuracy_per_class(classifier, folder, class_names)
        rows.append((w, result, accuracy))

    print("| guidance W | FID (all) | KID (all) | mean per-class FID | classifier accuracy |")
    print("|---|---|---|---|---|")
    for w, result, accuracy in rows:
        per_class = result["per_class"]
        mean_fid = sum(v["fid"] for v in per_class.values()) / len(per_class)
        correct = sum(c for c, _ in accuracy.values())
        total = sum(t for _, t in accuracy.values())
        print(f"| {w} | {result['fid']:.2f} | {result['kid_mean']:.3f} ± {result['kid_std']:.3f}"
              f" | {mean_fid:.2f} | {correct / total:.3f} ({correct}/{total}) |")
    print()
    print("| class | " + " | ".join(f"FID W={w} | acc W={w}" for w, _, _ in rows) + " |")
    print("|---|" + "---|---|" * len(rows))
    for name in class_names:
        cells = []
        for _, result, accuracy in rows:
            fid = result["per_class"].get(name, {}).get("fid")
            correct, total = accuracy.get(name, (0, 0))
            cells.append(f"{fid:.2f}" if fid is not None else "-")
            cells.append(f"{correct / total:.3f}" if total else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
