#!/usr/bin/env python3
"""`ddpm train`'s TensorBoard event files, read by TensorBoard itself.

A tiny run on drawn images (30 steps: a metrics line every 5, a grid every 10), then resumed to
40 steps (a second event file). TensorBoard's own loader (`EventAccumulator`, which checks every
record's CRC-32C) must find: every number of every metrics.jsonl line as a scalar under its key
at its step, equal as float32; each sample grid as an image of the grid's size whose PNG bytes
are the grid file's; the config and the command as text at the first step. An event file cut in
the middle of its last record still reads up to its last whole record, and a record whose bytes
changed is refused (so the check of the CRCs is real). `train.tensorboard=false` writes none.
"""
import argparse
import io
import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np

try:
    from PIL import Image
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util
except ImportError:
    sys.exit("tensorboard is not installed in this Python: run `pip install tensorboard` "
             "(scripts/setup.sh --test does it in the project's virtual environment)")

ROOT = pathlib.Path(__file__).resolve().parent.parent
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def run(*command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, command))}\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def draw_images(folder):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(16):
        y, x = np.mgrid[0:28, 0:28]
        cx, cy = rng.uniform(8, 20, size=2)
        pixels = np.where(np.hypot(x - cx, y - cy) < 6, 220, 20).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{k:02d}.png")


def events_in(path):
    """Every event of one file, through TensorBoard's raw loader (it checks the CRCs)."""
    return list(event_file_loader.RawEventFileLoader(str(path)).Load())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddpm", type=pathlib.Path, required=True)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    args = parser.parse_args()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    draw_images(work / "images")
    common = ["--set", "train.batch_size=8", "--set", "train.log_every=5",
              "--set", "train.sample_every=10", "--set", "train.checkpoint_every=10",
              "--set", "sample.num_images=4", "--threads", 2]
    run_dir = work / "run"
    run(args.ddpm, "train", "--config", ROOT / "configs/tiny.json", "--data", work / "images",
        "--out", run_dir, "--set", "train.steps=30", *common)
    run(args.ddpm, "train", "--out", run_dir, "--resume", "--set", "train.steps=40", *common)

    files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    check(len(files) == 2, f"a new event file for the resumed run ({len(files)} files)")
    accumulator = EventAccumulator(str(run_dir / "tensorboard"),
                                   size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    expected = {}
    for line in lines:
        for key, value in line.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                expected.setdefault(key, {})[line["step"]] = np.float32(value)
    found = {tag: {e.step: np.float32(e.value) for e in accumulator.Scalars(tag)}
             for tag in tags["scalars"]}
    check(set(expected) <= set(found), f"every metrics.jsonl key is a scalar tag "
          f"({sorted(expected)} in {sorted(found)})")
    equal = all(found.get(key, {}).get(step) == value
                for key, steps in expected.items() for step, value in steps.items())
    count = sum(len(steps) for steps in expected.values())
    check(equal and count >= 8 * 4, f"{count} scalars equal metrics.jsonl's values as float32")

    images = accumulator.Images("samples") if "samples" in tags["images"] else []
    check([image.step for image in images] == [10, 20, 30, 40],
          f"a grid image at steps 10, 20, 30, 40 ({[image.step for image in images]})")
    same = True
    for image in images:
        grid = run_dir / "samples" / f"step_{image.step:09d}.png"
        decoded = Image.open(io.BytesIO(image.encoded_image_string))
        same &= grid.is_file() and grid.read_bytes() == image.encoded_image_string and \
            decoded.size == (image.width, image.height)
    check(same and images, "each image is its grid's PNG, of the grid's size")

    texts = {tag: tensor_util.make_ndarray(accumulator.Tensors(tag)[0].tensor_proto).item()
             for tag in tags["tensors"]}
    check("config" in texts and b"base_channels" in texts["config"] and
          "command" in texts and b"ddpm train" in texts["command"],
          f"the config and the command as text ({sorted(texts)})")

    whole = events_in(files[0])
    cut = work / "cut" / files[0].name
    cut.parent.mkdir()
    data = files[0].read_bytes()
    cut.write_bytes(data[:-7])
    check(len(events_in(cut)) == len(whole) - 1,
          f"a file cut inside its last record reads its {len(whole) - 1} whole records")
    changed = work / "changed" / files[0].name
    changed.parent.mkdir()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    changed.write_bytes(bytes(flipped))
    try:
        refused = len(events_in(changed)) < len(whole)
    except Exception:  # a DataLossError: the CRC caught it
        refused = True
    check(refused, "a record whose bytes changed is refused by its CRC")

    quiet = work / "quiet"
    run(args.ddpm, "train", "--config", ROOT / "configs/tiny.json", "--data", work / "images",
        "--out", quiet, "--set", "train.steps=5", "--set", "train.tensorboard=false", *common)
    check(not (quiet / "tensorboard").exists(), "train.tensorboard=false writes no event file")
    if failures:
        sys.exit(f"{len(failures)} check(s) failed: " + "; ".join(failures))
    print("all TensorBoard checks passed")


if __name__ == "__main__":
    main()
