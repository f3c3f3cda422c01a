#!/usr/bin/env python3
"""Quality of a Fashion-MNIST model in more than one way: samples it, then measures the samples
with `ddpm eval --per-class` (FID, KID, precision/recall overall and per class, each class's
share of the samples, the classes found by the feature network's classifier) and counts the
shoes that face the wrong way.

Which way a shoe faces is measured independently of the feature network: Fashion-MNIST's
sandals, sneakers and ankle boots all face left (toe left, heel right), so the mean training
image of each shoe class is lopsided. An image of a shoe class faces right when it correlates
more with the mirrored class mean than with the class mean (Pearson correlation over the
pixels). The same test on the real test split and on its mirror image is printed beside, as
the measure's own error. The feature network's `mirrored` head gives a second count.

    python scripts/model_quality.py --checkpoint data/models/fashion_mnist_cpu.pt \\
        --out runs/quality/new [--num 2000] [--sampler dpmpp_2m --steps 10 --spacing karras]
    python scripts/model_quality.py --references --out runs/quality/references [--num 2000]

--references measures real images the same way, as the floor a model is held to: --num
training images against the test split, the same images mirrored, and half of them mirrored.
Writes OUT/summary.json and prints it; images and logs stay under --out. Run it with the
venv's Python (.venv/bin/python), which has torch.
"""
import argparse
import json
import pathlib
import subprocess
import sys

import numpy
import torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHOE_CLASSES = {"5": "sandal", "7": "sneaker", "9": "ankle boot"}


def run(command, log):
    with open(log, "w") as out:
        result = subprocess.run([str(c) for c in command], stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, command))}; see {log}")


def read_folder(folder):
    """float32 [N, 28, 28] in [-1, 1] of every PNG under `folder` (recursively, sorted)."""
    files = sorted(p for p in folder.rglob("*.png") if p.name != "grid.png")
    if not files:
        sys.exit(f"no PNG images under {folder}")
    pixels = numpy.stack([numpy.asarray(Image.open(f).convert("L")) for f in files])
    return torch.from_numpy(pixels).float().div(127.5).sub(1.0)


def write_folder(images, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        pixels = image.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        Image.fromarray(pixels, mode="L").save(folder / f"{index:05d}.png")


def class_means(train_folder):
    """{class folder name: mean training image [28, 28]} for the shoe classes."""
    return {name: read_folder(train_folder / name).mean(0) for name in SHOE_CLASSES}


def faces_right(images, mean):
    """bool [N]: correlates more with the mirrored class mean than with the class mean."""
    def correlation(x, template):
        x = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
        t = template.flatten() - template.mean()
        return (x @ t) / (x.norm(dim=1) * t.norm()).clamp_min(1e-12)
    return correlation(images, mean.flip(-1)) > correlation(images, mean)


def orientation(images, classes, means, classifier):
    """Per shoe class: images the classifier puts there, and the fraction facing right by the
    template measure and by the classifier's mirrored head."""
    with torch.no_grad():
        mirrored = classifier.mirrored(images.unsqueeze(1)) > 0.5
    result = {}
    total, right, right_head = 0, 0, 0
    for name, mean in means.items():
        rows = classes == int(name)
        count = int(rows.sum())
        if count == 0:
            result[name] = {"class": SHOE_CLASSES[name], "count": 0}
            continue
        by_template = int(faces_right(images[rows], mean).sum())
        by_head = int(mirrored[rows].sum())
        result[name] = {"class": SHOE_CLASSES[name], "count": count,
                        "right_template": by_template / count, "right_classifier": by_head / count}
        total, right, right_head = total + count, right + by_template, right_head + by_head
    result["all_shoes"] = {"count": total, "right_template": right / max(total, 1),
                           "right_classifier": right_head / max(total, 1)}
    return result


def evaluate(ddpm, folder, real, features, out, name, threads):
    json_file = out / f"{name}.eval.json"
    if not json_file.exists():
        run([ddpm, "eval", "--real", real, "--generated", folder, "--features", features,
             "--per-class", "--json", json_file, "--threads", threads], out / f"{name}.eval.log")
    result = json.loads(json_file.read_text())
    return {key: result[key] for key in ("fid", "kid_mean", "kid_std", "precision", "recall",
                                         "num_generated")} | {
        # A class with fewer than two samples has no FID (None here).
        "per_class": {name: {"fid": values.get("fid"), "fraction": values["fraction"]}
                      for name, values in result["per_class"].items()}}


def summarise(images, ddpm, folder, args, out, name, classifier, means):
    summary = evaluate(ddpm, folder, args.real, args.features, out, name, args.threads)
    with torch.no_grad():
        classes = classifier.classify(images.unsqueeze(1)).argmax(1)
    summary["orientation"] = orientation(images, classes, means, classifier)
    fractions = [values["fraction"] for values in summary["per_class"].values()]
    summary["class_share_min"], summary["class_share_max"] = min(fractions), max(fractions)
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="the model to sample (any ddpm sample accepts)")
    parser.add_argument("--references", action="store_true",
                        help="measure real, mirrored and half-mirrored training images instead")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--sampler")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--spacing")
    parser.add_argument("--variance", help="sample.variance of the ddpm sampler")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--real", default=str(ROOT / "data/fashion-mnist/test"),
                        help="real images in class subfolders (default: the test split)")
    parser.add_argument("--train", default=str(ROOT / "data/fashion-mnist/train"),
                        help="the training split (class means; --references' images)")
    parser.add_argument("--features", default=str(ROOT / "data/feature-nets/fashion_mnist.pt"))
    parser.add_argument("--ddpm", default=str(ROOT / "build/ddpm"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if bool(args.checkpoint) == args.references:
        sys.exit("give --checkpoint C or --references (one of them)")
    for path in (args.real, args.train, args.features, args.ddpm):
        if not pathlib.Path(path).exists():
            sys.exit(f"{path} does not exist (scripts/setup.sh --data, "
                     "scripts/train_feature_net.py and the build make them)")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    classifier = torch.jit.load(args.features)
    means = class_means(pathlib.Path(args.train))
    summary = {}
    if args.references:
        train = read_folder(pathlib.Path(args.train))
        chosen = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
                       [:args.num]]
        half = chosen.clone()
        half[: args.num // 2] = half[: args.num // 2].flip(-1)
        for name, images in (("real", chosen), ("mirrored", chosen.flip(-1)), ("half", half)):
            folder = args.out / name
            if not folder.exists():
                write_folder(images, folder)
            summary[name] = summarise(images, args.ddpm, folder, args, args.out, name,
                                      classifier, means)
        test = read_folder(pathlib.Path(args.real))
        with torch.no_grad():
            classes = classifier.classify(test.unsqueeze(1)).argmax(1)
        summary["test_orientation"] = orientation(test, classes, means, classifier)
        summary["test_mirrored_orientation"] = orientation(test.flip(-1), classes, means,
                                                           classifier)
    else:
        folder = args.out / "samples"
        if not folder.exists():
            command = [args.ddpm, "sample", "--checkpoint", args.checkpoint, "--out", folder,
                       "--num", args.num, "--seed", args.seed, "--threads", args.threads]
            for option in ("sampler", "steps", "spacing"):
                if getattr(args, option) is not None:
                    command += [f"--{option}", getattr(args, option)]
            if args.variance is not None:
                command += ["--set", f"sample.variance={args.variance}"]
            run(command, args.out / "sample.log")
        summary["samples"] = summarise(read_folder(folder), args.ddpm, folder, args, args.out,
                                       "samples", classifier, means)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
