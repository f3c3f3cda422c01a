#!/usr/bin/env python3
"""`ddpm compile` end to end: AOTInductor packages sample what their checkpoints sample.

Two models: the shipped Fashion-MNIST model (unconditional, v-prediction) and a tiny
class-conditional one that this check trains on two folders of drawn shapes. Each is compiled
(fp32, --max-batch 8) and sampled by `ddpm sample` from the checkpoint (eager LibTorch) and
from the package, with the same seeds:
  - the 8-bit images agree: |eager - package| <= 1 level on at least 99.9 % of the pixels, and
    never more than 8 levels (the package's kernels sum in another order than the eager ones,
    and 10-20 reverse steps carry a float32 rounding into an occasional rounding of a pixel),
    for ddim (uniform timesteps) and dpmpp_2m (Karras: fractional timesteps), and for the
    conditional model with guidance 3 (16 network images per call from batches of 4 x 2);
  - batch invariance with the package: image k of a seed is the same in batches of 8 and of 3
    (at most 1 level apart on 99.9 % of the pixels, as above);
  - `ddpm bench --checkpoint model.pt2` times it, `ddpm nll` scores with it within 0.01
    bits/dim of the checkpoint.
Refusals, each exit 2 with a message naming the cause, and no image written: a corrupt file, a
truncated package, a package another tool made (our metadata removed), a batch over the
maximum (and one that guidance doubles over it), a package compiled for another device, for
another torch, sampled in another precision or with --no-ema; a package given to train/export;
`ddpm compile` with a bad --out, an existing --out, --max-batch 0, a Python without torch.
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np

try:
    from PIL import Image, ImageDraw
except ImportError:
    sys.exit("Pillow is not installed in this Python (scripts/setup.sh --test installs it)")

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "data/models/fashion_mnist_cpu.pt"
failures = []


def run(*command, expect=0):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != expect:
        sys.exit(f"exit {result.returncode}, expected {expect}: {' '.join(map(str, command))}\n"
                 f"{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def images(folder):
    files = sorted(pathlib.Path(folder).rglob("*.png"))
    return np.stack([np.asarray(Image.open(f), dtype=np.int16) for f in files]), files


def compare(a_folder, b_folder, what):
    a, a_files = images(a_folder)
    b, b_files = images(b_folder)
    same_names = [f.relative_to(a_folder) for f in a_files] == \
        [f.relative_to(b_folder) for f in b_files]
    if not same_names or a.shape != b.shape:
        check(False, f"{what}: the same files ({len(a_files)} and {len(b_files)})")
        return
    difference = np.abs(a - b)
    within = float((difference <= 1).mean())
    check(within >= 0.999 and difference.max() <= 8,
          f"{what}: {100 * within:.3f} % of {difference.size} pixels within 1/255, "
          f"max {difference.max()} levels")


def sample(ddpm, checkpoint, out, *flags):
    shutil.rmtree(out, ignore_errors=True)
    run(ddpm, "sample", "--checkpoint", checkpoint, "--out", out, "--threads", 2, *flags)


def refused(ddpm, what, needle, *command, out=None):
    output = run(ddpm, *command, expect=2)
    nothing = out is None or not pathlib.Path(out).exists() or \
        not any(pathlib.Path(out).rglob("*.png"))
    check(needle in output and nothing, f"refused {what} (exit 2{', no images' if out else ''})")
    if needle not in output:
        print(f"     expected '{needle}' in: {output.strip()[-400:]}")


def draw_classes(folder):
    """Two classes of 28x28 grayscale images: discs and bars at random places."""
    rng = np.random.default_rng(0)
    for label, shape in enumerate(("disc", "bar")):
        (folder / shape).mkdir(parents=True, exist_ok=True)
        for k in range(24):
            image = Image.new("L", (28, 28), 0)
            draw = ImageDraw.Draw(image)
            x, y = rng.integers(6, 22, size=2)
            if label == 0:
                draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=int(rng.integers(150, 255)))
            else:
                draw.rectangle([2, y - 2, 25, y + 2], fill=int(rng.integers(150, 255)))
            image.save(folder / shape / f"{k:02d}.png")


def rewrite_metadata(package, out, change):
    """A copy of `package` whose metadata JSON files went through `change(dict)`."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("_metadata.json"):
                metadata = json.loads(data)
                change(metadata)
                data = json.dumps(metadata).encode()
            target.writestr(item, data)


def unconditional(ddpm, work):
    package = work / "shipped.pt2"
    run(ddpm, "compile", "--checkpoint", MODEL, "--out", package, "--max-batch", 8,
        "--overwrite", "--threads", 2)
    for sampler, flags in (("ddim", ["--steps", 20]), ("dpmpp_2m", ["--steps", 10])):
        common = ["--num", 16, "--batch", 8, "--seed", 5, "--sampler", sampler, *flags]
        sample(ddpm, MODEL, work / f"eager_{sampler}", *common)
        sample(ddpm, package, work / f"compiled_{sampler}", *common)
        compare(work / f"eager_{sampler}", work / f"compiled_{sampler}",
                f"shipped model, {sampler}: package against checkpoint")
    sample(ddpm, package, work / "compiled_batch3", "--num", 16, "--batch", 3, "--seed", 5,
           "--sampler", "ddim", "--steps", 20)
    compare(work / "compiled_ddim", work / "compiled_batch3",
            "batch invariance with the package (batches of 8 and 3)")
    bench = run(ddpm, "bench", "--checkpoint", package, "--mode", "sample", "--sampler", "ddim",
                "--chain-steps", 4, "--steps", 4, "--warmup", 1, "--batch", 4, "--threads", 2)
    check("sample_images_per_s" in bench and "shipped.pt2" in bench,
          "ddpm bench --checkpoint package measures it")
    bits = []
    for checkpoint in (MODEL, package):
        report = work / f"nll_{checkpoint.suffix[1:]}.json"
        run(ddpm, "nll", "--checkpoint", checkpoint, "--data", work / "classes" / "disc",
            "--num", 4, "--timesteps", 20, "--json", report, "--overwrite", "--threads", 2)
        bits.append(json.loads(report.read_text())["bits_per_dim"])
    check(abs(bits[0] - bits[1]) < 0.01, f"ddpm nll: checkpoint {bits[0]:.4f}, package "
          f"{bits[1]:.4f} bits/dim")
    return package


def conditional(ddpm, work):
    run(ddpm, "train", "--config", ROOT / "configs/tiny.json", "--data", work / "classes",
        "--out", work / "cond_run", "--set", "data.labels=folders", "--set", "train.steps=40",
        "--set", "train.batch_size=8", "--set", "train.sample_every=0",
        "--set", "train.checkpoint_every=40", "--threads", 2)
    package = work / "cond.pt2"
    run(ddpm, "compile", "--checkpoint", work / "cond_run", "--out", package, "--max-batch", 8,
        "--overwrite", "--threads", 2)
    for sampler, flags in (("ddim", ["--steps", 10]), ("dpmpp_2m", ["--steps", 8])):
        common = ["--num", 8, "--batch", 4, "--seed", 3, "--guidance", 3, "--sampler", sampler,
                  *flags]
        sample(ddpm, work / "cond_run", work / f"cond_eager_{sampler}", *common)
        sample(ddpm, package, work / f"cond_compiled_{sampler}", *common)
        compare(work / f"cond_eager_{sampler}", work / f"cond_compiled_{sampler}",
                f"conditional model, guidance 3, {sampler}: package against checkpoint")
    out = work / "refused"
    refused(ddpm, "a guided batch over the maximum", "--max-batch", "sample", "--checkpoint",
            package, "--out", out, "--num", 8, "--batch", 5, "--guidance", 3, out=out)


def refusals(ddpm, work, package):
    out = work / "refused"
    corrupt = work / "corrupt.pt2"
    corrupt.write_bytes(bytes(range(256)) * 64)
    refused(ddpm, "a corrupt package", "not a readable AOTInductor package", "sample",
            "--checkpoint", corrupt, "--out", out, out=out)
    truncated = work / "truncated.pt2"
    truncated.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    refused(ddpm, "a truncated package", "not a readable AOTInductor package", "sample",
            "--checkpoint", truncated, "--out", out, out=out)
    foreign = work / "foreign.pt2"
    rewrite_metadata(package, foreign,
                     lambda m: [m.pop(k) for k in list(m) if k.startswith("ddpm.")])
    refused(ddpm, "a package ddpm compile did not make", "did not make", "sample",
            "--checkpoint", foreign, "--out", out, out=out)
    refused(ddpm, "a batch over the maximum", "--max-batch", "sample", "--checkpoint", package,
            "--out", out, "--num", 16, "--batch", 16, out=out)
    cuda = work / "cuda.pt2"
    rewrite_metadata(package, cuda, lambda m: m.update({"AOTI_DEVICE_KEY": "cuda"}))
    refused(ddpm, "a package compiled for another device", "compiled for cuda", "sample",
            "--checkpoint", cuda, "--out", out, "--device", "cpu", out=out)
    old = work / "old_torch.pt2"
    rewrite_metadata(package, old, lambda m: m.update({"ddpm.torch_version": "2.0.0"}))
    refused(ddpm, "a package compiled with another torch", "compiled with torch 2.0.0",
            "sample", "--checkpoint", old, "--out", out, out=out)
    refused(ddpm, "sampling in another precision", "compiled for fp32", "sample",
            "--checkpoint", package, "--out", out, "--precision", "bf16", out=out)
    refused(ddpm, "--no-ema with a package of the EMA weights", "--weights model", "sample",
            "--checkpoint", package, "--out", out, "--no-ema", out=out)
    refused(ddpm, "a package as --init-from", "compiled package", "train", "--config",
            ROOT / "configs/tiny.json", "--data", work / "classes", "--out", work / "init_run",
            "--init-from", package)
    refused(ddpm, "exporting a package", "pass the checkpoint it was compiled from", "export",
            "--checkpoint", package, "--out", work / "exported")
    refused(ddpm, "compile --out without .pt2", ".pt2 file", "compile", "--checkpoint", MODEL,
            "--out", work / "model.bin")
    refused(ddpm, "compile over an existing file", "--overwrite", "compile", "--checkpoint",
            MODEL, "--out", package)
    refused(ddpm, "compile --max-batch 0", "--max-batch", "compile", "--checkpoint", MODEL,
            "--out", work / "zero.pt2", "--max-batch", 0)
    refused(ddpm, "compile with a Python without torch", "cannot import torch", "compile",
            "--checkpoint", MODEL, "--out", work / "nopython.pt2", "--python", "/bin/false")
    check(not any(work.glob(".*.compiling.*")), "no work folder left behind")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddpm", type=pathlib.Path, required=True)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    draw_classes(work / "classes")
    package = unconditional(args.ddpm, work)
    conditional(args.ddpm, work)
    refusals(args.ddpm, work, package)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed: " + "; ".join(failures))
    print("all compile checks passed")


if __name__ == "__main__":
    main()
