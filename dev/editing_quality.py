#!/usr/bin/env python3
"""Editing with a Fashion-MNIST model, measured (docs/BENCHMARKS.md, docs/EDITING.md): on --num
test images (the same number from each class), inpaint the left half and a centre square and
report the feature network classifier's accuracy on the results against the true labels, beside
its accuracy on the real images and on the images with the region filled with grey, and the FID
of each inpainted set against the test split; an image-to-image strength sweep (FID and mean
distance to the input); and DDIM inversion's round trip (PSNR) at several step counts. Writes
OUT/summary.json and, with --figure, a picture of each operation.

    .venv/bin/python dev/editing_quality.py --checkpoint data/models/fashion_mnist_cpu.pt \\
        --out runs/editing [--num 200] [--figure docs/images/editing.png]
"""
import argparse
import json
import math
import pathlib
import shutil
import sys

import numpy
import torch
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from model_quality import run  # noqa: E402  (runs a command into a log, exits on failure)


def read_folder(folder):
    files = sorted(folder.glob("*.png"))
    return torch.from_numpy(numpy.stack([numpy.asarray(Image.open(f).convert("L"))
                                         for f in files])).float()


def save(pixels, file):
    Image.fromarray(pixels.clamp(0, 255).round().to(torch.uint8).numpy(), mode="L").save(file)


def masks():
    """Keep-masks (255 keeps): the right half kept (the left generated), a border kept (the
    centre 14 x 14 generated)."""
    left = torch.full((28, 28), 255.0)
    left[:, :14] = 0
    centre = torch.full((28, 28), 255.0)
    centre[7:21, 7:21] = 0
    return {"left_half": left, "centre_square": centre}


def accuracy(classifier, pixels, labels):
    with torch.no_grad():
        predicted = classifier.classify(pixels.div(127.5).sub(1).unsqueeze(1)).argmax(1)
    return float((predicted == labels).float().mean())


def fid(args, folder, out, name):
    json_file = out / f"{name}.eval.json"
    run([args.ddpm, "eval", "--real", args.real, "--generated", folder, "--features",
         args.features, "--metrics", "fid", "--json", json_file, "--overwrite", "--threads",
         args.threads], out / f"{name}.eval.log")
    return json.loads(json_file.read_text())["fid"]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--num", type=int, default=200, help="test images (a tenth per class)")
    parser.add_argument("--real", type=pathlib.Path, default=ROOT / "data/fashion-mnist/test")
    parser.add_argument("--features", type=pathlib.Path,
                        default=ROOT / "data/feature-nets/fashion_mnist.pt")
    parser.add_argument("--ddpm", type=pathlib.Path, default=ROOT / "build/ddpm")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--repaint", default="50,5,5", help="steps,jump_length,jump_n_sample")
    parser.add_argument("--strengths", default="0.2,0.4,0.6,0.8,1.0", help='"": none')
    parser.add_argument("--inversion-steps", default="10,50,200", help='"": none')
    parser.add_argument("--figure", type=pathlib.Path)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(args.threads))
    classifier = torch.jit.load(str(args.features))

    inputs = out / "inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    inputs.mkdir()
    labels = []
    for label in range(10):
        for file in sorted((args.real / str(label)).glob("*.png"))[: args.num // 10]:
            shutil.copy(file, inputs / f"{len(labels):05d}.png")
            labels.append(label)
    labels = torch.tensor(labels)
    real = read_folder(inputs)
    summary = {"num": len(labels), "checkpoint": str(args.checkpoint),
               "accuracy_real": accuracy(classifier, real, labels), "inpainting": {},
               "image_to_image": {}, "inversion_psnr": {}}
    floor = out / "real_train"  # FID's floor at this number of images: real training images
    shutil.rmtree(floor, ignore_errors=True)
    floor.mkdir()
    train = args.real.parent / "train"
    for label in range(10):
        for k, file in enumerate(sorted((train / str(label)).glob("*.png"))[: args.num // 10]):
            shutil.copy(file, floor / f"{label}_{k:05d}.png")
    summary["fid_real_train_images"] = fid(args, floor, out, "real_train")
    base = [args.ddpm, "sample", "--checkpoint", args.checkpoint, "--threads", args.threads,
            "--batch", "100", "--seed", "1", "--overwrite"]

    steps, jump_length, jump_n_sample = args.repaint.split(",")
    for name, keep in masks().items():
        save(keep, out / f"{name}_mask.png")
        grey = real * (keep / 255) + 127.5 * (1 - keep / 255)
        folder = out / f"inpaint_{name}"
        run(base + ["--init", inputs, "--mask", out / f"{name}_mask.png", "--sampler", "ddpm",
                    "--steps", steps, "--set", f"sample.jump_length={jump_length}", "--set",
                    f"sample.jump_n_sample={jump_n_sample}", "--out", folder],
            out / f"inpaint_{name}.log")
        inpainted = read_folder(folder)
        summary["inpainting"][name] = {
            "accuracy": accuracy(classifier, inpainted, labels),
            "accuracy_grey_fill": accuracy(classifier, grey, labels),
            "fid": fid(args, folder, out, f"inpaint_{name}"),
            "kept_pixels_equal": bool(((inpainted - real).abs() * (keep / 255)).max() == 0)}

    for strength in filter(None, args.strengths.split(",")):
        folder = out / f"img2img_{strength}"
        run(base + ["--init", inputs, "--strength", strength, "--sampler", "dpmpp_2m", "--steps",
                    "20", "--out", folder], out / f"img2img_{strength}.log")
        edited = read_folder(folder)
        summary["image_to_image"][strength] = {
            "fid": fid(args, folder, out, f"img2img_{strength}"),
            "mean_abs_distance": float((edited - real).abs().mean() / 255),
            "accuracy": accuracy(classifier, edited, labels)}

    for steps in filter(None, args.inversion_steps.split(",")):
        noise = out / f"x_T_{steps}.pt"
        run([args.ddpm, "invert", "--checkpoint", args.checkpoint, "--images", inputs, "--steps",
             steps, "--out", noise, "--overwrite", "--batch", "100", "--threads", args.threads],
            out / f"invert_{steps}.log")
        folder = out / f"reconstruct_{steps}"
        run(base + ["--noise", noise, "--sampler", "ddim", "--steps", steps, "--num",
                    str(len(labels)), "--out", folder], out / f"reconstruct_{steps}.log")
        error = (read_folder(folder) - real).pow(2).flatten(1).mean(1)
        psnr = 10 * torch.log10(255.0 ** 2 / error.clamp(min=1e-10))
        summary["inversion_psnr"][steps] = {"mean": float(psnr.mean()),
                                            "median": float(psnr.median())}

    if args.figure:
        figure(args, out, real, labels)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def figure(args, out, real, labels):
    """Rows of examples: input, left-half inpainting, centre inpainting, image-to-image at 0.4
    and 0.8, the inversion's reconstruction; then an interpolation strip."""
    picks = [int(i) for i in torch.arange(0, len(labels), max(1, len(labels) // 6))[:6]]
    columns = [real, read_folder(out / "inpaint_left_half"), read_folder(out / "inpaint_centre_square"),
               read_folder(out / "img2img_0.4"), read_folder(out / "img2img_0.8"),
               read_folder(out / f"reconstruct_{args.inversion_steps.split(',')[1]}")]
    scale, pad = 3, 4
    cell = 28 * scale + pad
    frames = out / "interpolation"
    run([args.ddpm, "interpolate", "--checkpoint", args.checkpoint, "--from",
         out / "inputs" / f"{picks[0]:05d}.png", "--to", out / "inputs" / f"{picks[-1]:05d}.png",
         "--frames", "6", "--steps", "50", "--out", frames, "--overwrite", "--threads",
         args.threads], out / "interpolate.log")
    strip = read_folder(frames)
    canvas = Image.new("L", (cell * 6, cell * (len(picks) + 1)), 255)
    for row, index in enumerate(picks):
        for column, images in enumerate(columns):
            tile = Image.fromarray(images[index].to(torch.uint8).numpy(), mode="L")
            canvas.paste(tile.resize((28 * scale, 28 * scale), Image.NEAREST),
                         (column * cell, row * cell))
    for column in range(6):
        tile = Image.fromarray(strip[column].to(torch.uint8).numpy(), mode="L")
        canvas.paste(tile.resize((28 * scale, 28 * scale), Image.NEAREST),
                     (column * cell, len(picks) * cell))
    canvas.save(args.figure)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
