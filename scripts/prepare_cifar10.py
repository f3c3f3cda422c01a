#!/usr/bin/env python3
"""Turns CIFAR-10 (the official "python version" archive, cifar-10-python.tar.gz) into image
folders: <out>/train/<class>/<index>.png (50,000) and <out>/test/<class>/<index>.png (10,000),
32x32 RGB, one subfolder per class (airplane ... truck), the layout `ddpm train` reads classes
from (data.labels folders).

    python3 scripts/prepare_cifar10.py --archive cifar-10-python.tar.gz [--out data/cifar10]
    python3 scripts/prepare_cifar10.py --url URL [--out data/cifar10]

--archive reads the "CIFAR-10 python version" archive from its authors' page, downloaded
beforehand; --url (or $DDPM_CIFAR10_URL) downloads it into the output folder first, from that
page's link or a copy the site keeps. Its MD5 is checked either way. Python's standard library only: the archive's
pickled numpy arrays are read by a restricted unpickler that takes their bytes and nothing
else (no code from the archive runs). Idempotent: a marker written last says the output is
complete, and a second run does nothing; an interrupted run is simply run again.
"""
import argparse
import codecs
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import time
import urllib.request
import zlib
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "data" / "cifar10"
MD5 = "c58f30108f718f92721af3b95e74349a"
MARKER = ".prepared.json"
TRAIN_BATCHES = [f"data_batch_{k}" for k in range(1, 6)]
TEST_BATCHES = ["test_batch"]
SIDE = 32


class PrepareError(Exception):
    pass


class Array:
    """What the unpickler makes of a pickled numpy array: its shape and raw bytes."""

    def __init__(self, *args):
        self.shape, self.raw, self.dtype = (), b"", None

    def __setstate__(self, state):
        # numpy's ndarray state: (version, shape, dtype, is_fortran, raw data)
        _, self.shape, self.dtype, fortran, self.raw = state
        if fortran:
            raise PrepareError("a Fortran-ordered array: not the CIFAR-10 archive")


class DType:
    def __init__(self, name, *args):
        self.name = name

    def __setstate__(self, state):
        pass


class RestrictedUnpickler(pickle.Unpickler):
    """Builtins and numpy's array reconstruction (as bytes) only; anything else is refused."""

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and \
                name == "_reconstruct":
            return lambda cls, shape, dtype: Array()
        if module == "numpy" and name == "ndarray":
            return Array
        if module == "numpy" and name == "dtype":
            return DType
        if module == "_codecs" and name == "encode":  # how Python 3 pickles bytes
            return codecs.encode
        if module == "builtins" and name in ("dict", "list", "bytes", "str", "int"):
            return getattr(__import__("builtins"), name)
        raise PrepareError(f"the archive's pickle refers to {module}.{name}: not the CIFAR-10 "
                           "python archive (refused: reading it could run code)")


def load_pickle(data, what):
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except PrepareError:
        raise
    except Exception as error:  # pickle raises many kinds on corrupt input
        raise PrepareError(f"{what} is not a readable pickle ({error}); the archive is corrupt")


def key(mapping, name, what):
    for candidate in (name.encode(), name):
        if isinstance(mapping, dict) and candidate in mapping:
            return mapping[candidate]
    raise PrepareError(f"{what} has no '{name}': not the CIFAR-10 python archive")


def read_batch(members, name):
    data = members.get(name)
    if data is None:
        raise PrepareError(f"the archive has no cifar-10-batches-py/{name}")
    batch = load_pickle(data, name)
    images = key(batch, "data", name)
    labels = list(key(batch, "labels", name))
    if not isinstance(images, Array) or len(images.shape) != 2 or \
            getattr(images.dtype, "name", None) not in ("u1", b"u1") or \
            images.shape[1] != 3 * SIDE * SIDE or len(images.raw) != images.shape[0] * 3072:
        raise PrepareError(f"{name}: its data is not a uint8 array of N x 3072")
    if images.shape[0] != len(labels) or any(not 0 <= label <= 9 for label in labels):
        raise PrepareError(f"{name}: {len(labels)} labels for {images.shape[0]} images, or a "
                           "label outside 0..9")
    return images.raw, labels


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def rgb_png(planar):
    """An 8-bit RGB PNG from CIFAR's planar 3072 bytes (1024 red, 1024 green, 1024 blue)."""
    red, green, blue = planar[:1024], planar[1024:2048], planar[2048:]
    rows = bytearray()
    for y in range(SIDE):
        rows.append(0)
        for x in range(SIDE):
            i = y * SIDE + x
            rows += bytes((red[i], green[i], blue[i]))
    header = struct.pack(">IIBBBBB", SIDE, SIDE, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) +
            png_chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + png_chunk(b"IEND", b""))


def read_archive(path):
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {}
            for member in archive.getmembers():
                if member.isfile() and member.name.startswith("cifar-10-batches-py/"):
                    members[member.name.split("/", 1)[1]] = archive.extractfile(member).read()
            return members
    except (OSError, tarfile.TarError, EOFError) as error:
        raise PrepareError(f"cannot read {path} as a .tar.gz ({error}); download it again")


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, target):
    print(f"downloading {url} (163 MB) to {target}", file=sys.stderr)
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise PrepareError(f"cannot download {url} ({error}); on a machine without the internet "
                           "fetch cifar-10-python.tar.gz elsewhere and pass --archive PATH")
    os.replace(partial, target)


def write_split(members, names, classes, folder):
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
    index = 0
    for batch in names:
        raw, labels = read_batch(members, batch)
        for k, label in enumerate(labels):
            data = rgb_png(raw[k * 3072:(k + 1) * 3072])
            (folder / classes[label] / f"{index:05d}.png").write_bytes(data)
            index += 1
    return index


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, help="cifar-10-python.tar.gz, downloaded")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--url", default=os.environ.get("DDPM_CIFAR10_URL"),
                        help="where to download the archive from (default: $DDPM_CIFAR10_URL)")
    parser.add_argument("--no-md5", action="store_true",
                        help="skip the archive's checksum (for a test archive)")
    args = parser.parse_args()
    marker = args.out / MARKER
    try:
        previous = json.loads(marker.read_text())
        print(f"{args.out} is already prepared ({previous['train']} training and "
              f"{previous['test']} test images); nothing to do")
        return 0
    except (OSError, ValueError, KeyError, TypeError):
        pass
    started = time.monotonic()
    try:
        archive = args.archive
        if archive is None and not args.url:
            raise PrepareError("pass --archive cifar-10-python.tar.gz (the \"CIFAR-10 python "
                               "version\" from its authors' page), or --url URL (or set "
                               "DDPM_CIFAR10_URL) to download it")
        if archive is None:
            args.out.mkdir(parents=True, exist_ok=True)
            archive = args.out / "cifar-10-python.tar.gz"
            if not archive.is_file():
                download(args.url, archive)
        elif not archive.is_file():
            raise PrepareError(f"--archive {archive}: no such file")
        if not args.no_md5 and md5_of(archive) != MD5:
            raise PrepareError(f"{archive} is not the CIFAR-10 python archive (its MD5 is not "
                               f"{MD5}); download it again, or pass --no-md5 for another one")
        members = read_archive(archive)
        meta = load_pickle(members.get("batches.meta", b""), "batches.meta")
        classes = [name.decode() if isinstance(name, bytes) else name
                   for name in key(meta, "label_names", "batches.meta")]
        if len(classes) != 10 or len(set(classes)) != 10 or \
                any(not name or "/" in name or name.startswith(".") for name in classes):
            raise PrepareError(f"batches.meta names {classes}: not CIFAR-10's ten classes")
        counts = {"train": write_split(members, TRAIN_BATCHES, classes, args.out / "train"),
                  "test": write_split(members, TEST_BATCHES, classes, args.out / "test")}
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write to {args.out}: {error}", file=sys.stderr)
        return 1
    os.sync()  # the images reach the disk before the marker that vouches for them
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(json.dumps({"format": 1, "classes": classes, **counts}) + "\n")
    os.replace(temporary, marker)
    print(f"wrote {counts['train']} training and {counts['test']} test images in "
          f"{len(classes)} classes to {args.out} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
