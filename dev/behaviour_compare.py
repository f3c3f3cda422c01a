"""Compares two snapshots of dev/behaviour_snapshot.sh: every PNG's pixels and text metadata,
every checkpoint's tensors (each storage of the archive, byte for byte) and the evaluation
figures of the training run's metrics.jsonl. Prints one line per file and exits 1 if anything
differs.

    .venv/bin/python dev/behaviour_compare.py runs/snap_before runs/snap_after
"""
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

TIMING_KEYS = {"images_per_s", "wall_time_s", "eval_seconds"}


def storages(path):
    with zipfile.ZipFile(path) as archive:
        return {name.split("/", 1)[1]: archive.read(name)
                for name in archive.namelist() if "/data/" in name}


def metrics(path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def same(a, b):
    if a.suffix == ".png":  # pixels and the text metadata (sampler, seed, class, ...)
        first, second = Image.open(a), Image.open(b)
        return (np.array_equal(np.asarray(first), np.asarray(second)) and
                dict(first.text) == dict(second.text))
    if a.suffix == ".pt":
        return storages(a) == storages(b)
    if a.name == "metrics.jsonl":
        return metrics(a) == metrics(b)
    return None  # logs, configs: not compared


def main():
    before, after = Path(sys.argv[1]), Path(sys.argv[2])
    compared, differing = 0, []
    for a in sorted(before.rglob("*")):
        if not a.is_file():
            continue
        b = after / a.relative_to(before)
        if not b.exists():
            if a.suffix in (".png", ".pt") or a.name == "metrics.jsonl":
                differing.append(f"missing in {after}: {a.relative_to(before)}")
            continue
        result = same(a, b)
        if result is None:
            continue
        compared += 1
        if not result:
            differing.append(f"differs: {a.relative_to(before)}")
    for line in differing:
        print(line)
    print(f"{compared} files compared (PNG pixels and metadata, checkpoint tensors, evaluation "
          f"figures); "
          f"{len(differing)} differ")
    return 1 if differing or compared == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
