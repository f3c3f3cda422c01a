#!/usr/bin/env python3
"""Turns Debian's Fashion-MNIST (package dataset-fashion-mnist, IDX files) into an image folder:
<output>/train/<label>/<index>.png and <output>/test/<label>/<index>.png, 28x28 grayscale.

Python standard library only. Idempotent: a marker file written last says the output is
complete, and a second run then does nothing; an interrupted run is simply run again (it
rewrites its own files and touches nothing else in the folder).

    python3 scripts/prepare_fashion_mnist.py [--input DIR] [--output DIR]
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path

DEFAULT_INPUT = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data" / "fashion-mnist"
MARKER = ".prepared.json"
SPLITS = {  # split -> (images file, labels file, expected count)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


class PrepareError(Exception):
    pass


def read_idx(path, magic, dimensions):
    """Returns (shape, payload) of a gzipped IDX file after checking its magic and size."""
    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as error:
        raise PrepareError(f"cannot read {path}: {error}; reinstall with "
                           "`sudo apt-get install --reinstall dataset-fashion-mnist`")
    header = 4 + 4 * dimensions
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise PrepareError(f"{path} is not an IDX file with magic 0x{magic:08x}")
    shape = struct.unpack(f">{dimensions}I", data[4:header])
    count = 1
    for size in shape:
        count *= size
    if len(data) != header + count:
        raise PrepareError(f"{path} holds {len(data) - header} bytes of data, its header "
                           f"promises {count}; the file is truncated or corrupt")
    return shape, memoryview(data)[header:]


def png_bytes(pixels, height, width, prefix, suffix):
    """An 8-bit grayscale PNG: every row gets filter type 0 (none)."""
    rows = bytearray((width + 1) * height)
    for y in range(height):
        start = y * (width + 1) + 1
        rows[start:start + width] = pixels[y * width:(y + 1) * width]
    compressed = zlib.compress(bytes(rows), 6)
    idat = b"IDAT" + compressed
    return b"".join((prefix, struct.pack(">I", len(compressed)), idat,
                     struct.pack(">I", zlib.crc32(idat)), suffix))


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def write_split(input_dir, output_dir, split):
    images_name, labels_name, expected = SPLITS[split]
    shape, pixels = read_idx(input_dir / images_name, IMAGES_MAGIC, 3)
    (label_count,), labels = read_idx(input_dir / labels_name, LABELS_MAGIC, 1)
    count, height, width = shape
    if count != expected or label_count != expected:
        raise PrepareError(f"{split}: expected {expected} images and labels, found {count} "
                           f"images and {label_count} labels in {input_dir}")
    if max(labels) > 9:
        raise PrepareError(f"{input_dir / labels_name} holds a label above 9; it is corrupt")
    prefix = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                                   8, 0, 0, 0, 0))
    suffix = png_chunk(b"IEND", b"")
    folders = [output_dir / split / str(label) for label in range(10)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    size = height * width
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    for index in range(count):
        data = png_bytes(pixels[index * size:(index + 1) * size], height, width, prefix, suffix)
        # os.open/os.write: several times faster than open() for many small files.
        descriptor = os.open(folders[labels[index]] / f"{index}.png", flags, 0o644)
        try:
            if os.write(descriptor, data) != len(data):
                raise OSError(f"short write to {folders[labels[index]] / f'{index}.png'}")
        finally:
            os.close(descriptor)
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT,
                        help=f"folder with the IDX .gz files (default {DEFAULT_INPUT})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"output folder (default {DEFAULT_OUTPUT})")
    args = parser.parse_args()

    marker = args.output / MARKER
    expected_marker = {"format": 1, "splits": {s: SPLITS[s][2] for s in SPLITS}}
    try:
        if json.loads(marker.read_text()) == expected_marker:
            print(f"{args.output} is already prepared; nothing to do")
            return 0
    except (OSError, ValueError):
        pass

    missing = [name for s in SPLITS.values() for name in s[:2] if not (args.input / name).is_file()]
    if missing:
        print(f"error: Fashion-MNIST not found in {args.input} (missing {', '.join(missing)}).\n"
              "Install it with: sudo apt-get install dataset-fashion-mnist\n"
              "or pass --input with the folder that holds the four IDX .gz files.",
              file=sys.stderr)
        return 1

    started = time.monotonic()
    try:
        counts = {split: write_split(args.input, args.output, split) for split in SPLITS}
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write to {args.output}: {error}", file=sys.stderr)
        return 1
    os.sync()  # the images reach the disk before the marker that vouches for them
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(json.dumps(expected_marker) + "\n")
    os.replace(temporary, marker)
    print(f"wrote {counts['train']} training and {counts['test']} test images to "
          f"{args.output} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
