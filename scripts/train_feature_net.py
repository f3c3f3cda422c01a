#!/usr/bin/env python3
"""Trains a small CNN classifier on Fashion-MNIST and exports its feature extractor for `ddpm eval`.

The classifier tells 20 labels: the 10 classes, each as the data has it and mirrored left to
right (every training image is mirrored with probability 1/2 and labelled so). Fashion-MNIST's
shoes all face left; a network trained on the 10 classes alone scores mirrored shoes as shoes
and its features barely move, so FID could not see a model that draws them the wrong way. With
orientation in the labels, its features separate the two (docs/BENCHMARKS.md, 2026-12-06:
FID of mirrored real images against real ones, beside real against real).

The exported TorchScript module follows the feature-network convention of
src/eval/feature_net.h: int attributes input_channels = 1, input_height = 28,
input_width = 28; forward takes float32 [N, 1, 28, 28] in [-1, 1] (pixel / 127.5 - 1, as ddpm
reads PNGs) and returns [N, 128]: the penultimate fully connected layer of the classifier,
before its ReLU, standardised with the training split's mean and standard deviation of each
feature (so KID's kernel (x.y / D + 1)^3 sees values of order 1, and FID is in units of the
training features' variance). Its methods `classify` (the 10 classes' logits, each the
log-sum-exp of the class's two orientations) and `mirrored` (the probability that an image is
mirrored) and its attribute `class_names` (the class folders' names, "0" ... "9") are what
`ddpm eval --per-class` on unconditional samples and scripts/model_quality.py read.

Reads Debian's IDX files (package dataset-fashion-mnist) directly: the same pixels as the PNG
folders that scripts/prepare_fashion_mnist.py writes. Prints the test accuracy; refuses to
replace an existing output without --overwrite.

    python3 scripts/train_feature_net.py [--output data/feature-nets/fashion_mnist.pt]
        [--epochs 4] [--threads 2] [--seed 0] [--overwrite]
"""
import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_fashion_mnist import (DEFAULT_INPUT, IMAGES_MAGIC, LABELS_MAGIC, SPLITS,  # noqa: E402
                                   PrepareError, read_idx)

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data/feature-nets/fashion_mnist.pt"
FEATURE_DIM = 128
NUM_CLASSES = 10
CLASS_NAMES = [str(label) for label in range(NUM_CLASSES)]  # prepare_fashion_mnist's folders


class Classifier(nn.Module):
    """Three 3x3 conv layers with pooling (28 -> 14 -> 7), a 128-unit layer, 20 labels: class c
    as the data has it is label c, mirrored it is label c + 10."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(FEATURE_DIM, 2 * NUM_CLASSES))

    def forward(self, x):
        return self.head(self.features(x))


class FeatureExtractor(nn.Module):
    """What ddpm eval loads: the classifier's features, standardised with the training split's
    mean and standard deviation of each feature, with the declared input."""

    def __init__(self, classifier, mean, std):
        super().__init__()
        self.features = classifier.features
        self.head = classifier.head
        self.register_buffer("feature_mean", mean.clone())
        self.register_buffer("feature_scale", 1 / std.clamp_min(1e-6))
        self.input_channels = 1
        self.input_height = 28
        self.input_width = 28
        self.class_names = CLASS_NAMES

    def forward(self, x):
        return (self.features(x) - self.feature_mean) * self.feature_scale

    @torch.jit.export
    def classify(self, x):
        """Logits over the 10 classes, whichever way an image faces (ddpm eval --per-class and
        scripts/class_quality.py read them)."""
        return class_logits(self.head(self.features(x)))

    @torch.jit.export
    def mirrored(self, x):
        """The probability that each image is mirrored relative to the data, [N]."""
        logits = self.head(self.features(x))
        return torch.softmax(logits, 1)[:, logits.size(1) // 2:].sum(1)


def class_logits(logits):
    """[N, 20] label logits -> [N, 10] class logits: log(p(c) + p(c mirrored)), unnormalised."""
    half = logits.size(1) // 2
    return torch.logsumexp(torch.stack([logits[:, :half], logits[:, half:]]), 0)


def mirror(images):
    return images.flip(-1)


def raw_features(model, images, batch=1000):
    model.eval()
    with torch.no_grad():
        return torch.cat([model.features(images[first:first + batch])
                          for first in range(0, len(images), batch)])


def load_split(input_dir, split):
    """float32 [N, 1, 28, 28] in [-1, 1] and int64 labels [N]."""
    images_name, labels_name, _ = SPLITS[split]
    shape, pixels = read_idx(input_dir / images_name, IMAGES_MAGIC, 3)
    _, labels = read_idx(input_dir / labels_name, LABELS_MAGIC, 1)
    images = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(shape[0], 1, *shape[1:])
    return images.float() / 127.5 - 1, torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()


def accuracy(model, images, labels, batch=1000):
    """Fraction of images whose 20-way label (class, orientation) is predicted."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for first in range(0, len(images), batch):
            logits = model(images[first:first + batch])
            correct += (logits.argmax(1) == labels[first:first + batch]).sum().item()
    return correct / len(images)


def class_accuracy(model, images, labels, batch=1000):
    """Fraction of images whose class is predicted, whichever way it faces."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for first in range(0, len(images), batch):
            logits = class_logits(model(images[first:first + batch]))
            correct += (logits.argmax(1) == labels[first:first + batch] % NUM_CLASSES).sum().item()
    return correct / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT,
                        help=f"folder with the IDX .gz files (default {DEFAULT_INPUT})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"TorchScript file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam learning rate of the first epoch; halved each later epoch")
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads (default 2, the development machine's cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args()

    if args.output.exists() and not args.overwrite:
        print(f"error: {args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        train_images, train_labels = load_split(args.input, "train")
        test_images, test_labels = load_split(args.input, "test")
    except (PrepareError, FileNotFoundError) as error:
        print(f"error: {error}\nInstall Fashion-MNIST with: sudo apt-get install "
              "dataset-fashion-mnist (or pass --input DIR)", file=sys.stderr)
        return 1

    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.monotonic()
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:  # step decay: a few epochs reach a lower loss
            group["lr"] = args.lr * 0.5 ** epoch
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        total_loss = 0.0
        flips = torch.rand(len(order), generator=generator) < 0.5
        for first in range(0, len(order), args.batch):
            rows = order[first:first + args.batch]
            flip = flips[first:first + args.batch]
            images = torch.where(flip.view(-1, 1, 1, 1), mirror(train_images[rows]),
                                 train_images[rows])
            labels = train_labels[rows] + NUM_CLASSES * flip.long()
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(rows)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total_loss / len(order):.4f}, "
              f"{time.monotonic() - started:.0f} s", flush=True)
    train_seconds = time.monotonic() - started
    test_accuracy = class_accuracy(model, test_images, test_labels)
    both_ways = torch.cat([test_images, mirror(test_images)])
    both_labels = torch.cat([test_labels, test_labels + NUM_CLASSES])
    label_accuracy = accuracy(model, both_ways, both_labels)
    shoes = (test_labels == 5) | (test_labels == 7) | (test_labels == 9)
    shoe_accuracy = accuracy(model, torch.cat([test_images[shoes], mirror(test_images[shoes])]),
                             torch.cat([test_labels[shoes], test_labels[shoes] + NUM_CLASSES]))

    train_features = raw_features(model, train_images).double()
    mean, std = train_features.mean(0).float(), train_features.std(0).float()
    extractor = torch.jit.script(FeatureExtractor(model, mean, std).eval())
    with torch.no_grad():
        reference = (model.features(test_images[:256]) - mean) / std
        exported = extractor(test_images[:256])
        logits_match = torch.allclose(class_logits(model(test_images[:256])),
                                      extractor.classify(test_images[:256]), atol=1e-4)
    if (not torch.allclose(reference, exported, atol=1e-4) or not logits_match
            or exported.shape != (256, FEATURE_DIM)):
        print("error: the exported module does not reproduce the classifier's features",
              file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(args.output.name + ".tmp")
    torch.jit.save(extractor, str(temporary))
    os.replace(temporary, args.output)
    print(f"test accuracy {test_accuracy:.4f} (10 classes, 10,000 test images); "
          f"class and orientation {label_accuracy:.4f} (20 labels, the test images and their "
          f"mirror images); shoes' orientation and class {shoe_accuracy:.4f} (sandals, sneakers, "
          f"ankle boots, both ways); trained {args.epochs} epochs in {train_seconds:.0f} s on "
          f"{args.threads} threads")
    print(f"wrote {args.output}: {FEATURE_DIM} features per 1x28x28 image in [-1, 1]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
