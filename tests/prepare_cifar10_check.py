#!/usr/bin/env python3
"""scripts/prepare_cifar10.py on a small archive of the official format, written here the way
the real one is made (pickled dicts with numpy uint8 arrays of N x 3072 planar RGB, labels,
batches.meta's label names): 5 training batches and a test batch of 4 images each, every
class in the training split.

Checks: train/ and test/ hold one folder per class with the right counts; every PNG decodes to
exactly its row of the archive (planar RGB to 32x32x3); a second run does nothing; a pickle that
would run code is refused (exit 1, no images); a corrupt archive and a wrong MD5 are refused
with their reasons, and so is a call with neither --archive nor --url; `ddpm train` reads the folder's classes (data.labels folders).
"""
import argparse
import io
import pathlib
import pickle
import shutil
import subprocess
import sys
import tarfile

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "prepare_cifar10.py"
NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
         b"ship", b"truck"]
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def write_archive(path, batches, meta=None):
    def add(tar, name, data):
        info = tarfile.TarInfo("cifar-10-batches-py/" + name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w:gz") as tar:
        add(tar, "batches.meta", meta or pickle.dumps({b"label_names": NAMES}, protocol=2))
        for name, (data, labels) in batches.items():
            add(tar, name, pickle.dumps({b"data": data, b"labels": labels,
                                         b"batch_label": name.encode()}, protocol=2))


def prepare(*arguments):
    return subprocess.run([sys.executable, SCRIPT, *map(str, arguments)], capture_output=True,
                          text=True)


class RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddpm", type=pathlib.Path, required=True)
    parser.add_argument("--workdir", type=pathlib.Path, required=True)
    work = parser.parse_args().workdir
    ddpm = parser.parse_args().ddpm
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(0)
    # Training labels 0, 1, ..., 9, 0, ..., 9 over the five batches (every class twice); the
    # test batch 0, 3, 9, 3.
    batches = {f"data_batch_{k}": (rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                                   [(4 * (k - 1) + i) % 10 for i in range(4)])
               for k in range(1, 6)}
    batches["test_batch"] = (rng.integers(0, 256, (4, 3072), dtype=np.uint8), [0, 3, 9, 3])
    archive = work / "cifar-10-python.tar.gz"
    write_archive(archive, batches)

    out = work / "cifar10"
    result = prepare("--archive", archive, "--out", out, "--no-md5")
    check(result.returncode == 0, f"prepares the archive ({result.stdout.strip()}"
                                  f"{result.stderr.strip()})")
    classes = sorted(name.decode() for name in NAMES)
    check(sorted(p.name for p in (out / "train").iterdir()) == classes and
          sorted(p.name for p in (out / "test").iterdir()) == classes,
          "one folder per class in train/ and test/")
    counts = {split: {c: len(list((out / split / c).glob("*.png"))) for c in ("airplane", "cat",
                                                                               "truck")}
              for split in ("train", "test")}
    check(counts == {"train": {"airplane": 2, "cat": 2, "truck": 2},
                     "test": {"airplane": 1, "cat": 2, "truck": 1}},
          f"images per class {counts}")
    data, labels = batches["data_batch_2"]
    exact = True
    for k in range(4):  # data_batch_2's images are 4..7 of the training split
        image = np.asarray(Image.open(out / "train" / NAMES[labels[k]].decode() /
                                      f"{4 + k:05d}.png"))
        exact &= image.shape == (32, 32, 3) and \
            (image == data[k].reshape(3, 32, 32).transpose(1, 2, 0)).all()
    check(exact, "every PNG is its archive row (planar RGB -> 32x32x3)")
    again = prepare("--archive", archive, "--out", out, "--no-md5")
    check(again.returncode == 0 and "nothing to do" in again.stdout, "a second run does nothing")

    evil = work / "evil.tar.gz"
    write_archive(evil, batches, meta=pickle.dumps({b"label_names": RunsCode()}, protocol=2))
    result = prepare("--archive", evil, "--out", work / "evil", "--no-md5")
    check(result.returncode == 1 and "could run code" in result.stderr and
          "must never run" not in result.stdout and
          not list((work / "evil").rglob("*.png")), "a pickle that would run code is refused")
    corrupt = work / "corrupt.tar.gz"
    corrupt.write_bytes(archive.read_bytes()[:200])
    result = prepare("--archive", corrupt, "--out", work / "corrupt", "--no-md5")
    check(result.returncode == 1 and "download it again" in result.stderr,
          "a truncated archive is refused")
    result = prepare("--out", work / "nothing")
    check(result.returncode == 1 and "--archive" in result.stderr and
          not (work / "nothing").exists(), "without --archive or --url it says what to pass")
    result = prepare("--archive", archive, "--out", work / "md5")
    check(result.returncode == 1 and "MD5" in result.stderr, "a wrong MD5 is refused")

    run = subprocess.run([str(ddpm), "train", "--config", ROOT / "configs" / "tiny.json",
                          "--data", out / "train", "--out", work / "run",
                          "--set", "data.labels=folders", "--set", "data.channels=3",
                          "--set", "data.image_size=32",
                          "--set", "model.attention_resolutions=[16]",
                          "--set", "train.steps=1",
                          "--set", "train.batch_size=4", "--set", "train.sample_every=0",
                          "--threads", "2"], capture_output=True, text=True)
    check(run.returncode == 0 and "10 classes" in run.stdout + run.stderr,
          "ddpm train reads the ten class folders")
    if run.returncode != 0 or "10 classes" not in run.stdout + run.stderr:
        print((run.stdout + run.stderr)[-1500:])
    if failures:
        sys.exit(f"{len(failures)} check(s) failed: " + "; ".join(failures))
    print("all prepare_cifar10 checks passed")


if __name__ == "__main__":
    main()
