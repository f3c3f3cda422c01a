#!/usr/bin/env python3
"""Exports an Inception-v3 pool3 feature extractor (2048 features per image) for `ddpm eval`.

The standard FID network cannot be downloaded on every machine, so this script builds it from a
weights file you have:

  - pytorch-fid's FID weights (pt_inception-2015-12-05-6726825d.pth, the TensorFlow FID network
    ported; 1008 classes): --variant fid, the network FID numbers in papers use;
  - torchvision's ImageNet weights (inception_v3_google-0cc3c7bd.pth; 1000 classes):
    --variant torchvision, close to but not the same as the FID network.

--variant auto (the default) picks by the size of the file's fc layer. The module is defined
here (plain torch, same parameter names as torchvision's Inception3) and follows the
feature-network convention of src/eval/feature_net.h: int attributes input_channels = 3,
input_height = input_width = --input-size; forward takes float32 [N, 3, H, W] in [-1, 1], which
is the range both weight sets expect, and returns [N, 2048], the average-pooled output of
Mixed_7c. With --input-size other than 299, ddpm resizes images to that size and the module
resizes them to 299 x 299 bilinearly (as pytorch-fid does), e.g. --input-size 32 for CIFAR-10.

    python3 scripts/export_inception.py --weights pt_inception-2015-12-05-6726825d.pth \\
        [--variant auto|fid|torchvision] [--input-size 299] \\
        [--output data/feature-nets/inception_v3.pt] [--overwrite]
    python3 scripts/export_inception.py --self-check   # needs torchvision; random weights
"""
import argparse
import os
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data/feature-nets/inception_v3.pt"
NETWORK_SIZE = 299

warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")


class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def pool_branch(x, fid_pooling: bool, use_max: bool):
    """The pooling before a block's pool branch. The FID network averages over the valid
    pixels only (count_include_pad=False), and its last block takes the maximum."""
    if use_max:
        return F.max_pool2d(x, 3, 1, 1)
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=not fid_pooling)


class InceptionA(nn.Module):
    def __init__(self, in_channels, pool_features, fid):
        super().__init__()
        self.fid = fid
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), double,
                          self.branch_pool(pool_branch(x, self.fid, False))], 1)


class InceptionB(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), double, F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, in_channels, channels_7x7, fid):
        super().__init__()
        self.fid = fid
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        double = self.branch7x7dbl_5(self.branch7x7dbl_4(double))
        return torch.cat([self.branch1x1(x), single, double,
                          self.branch_pool(pool_branch(x, self.fid, False))], 1)


class InceptionD(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        seven = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), seven, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    def __init__(self, in_channels, fid, max_pool):
        super().__init__()
        self.fid = fid
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pool_branch(x, self.fid, self.max_pool))], 1)


class InceptionPool3(nn.Module):
    """Inception-v3 up to the 2048-d global average pool; parameter names as torchvision's."""

    def __init__(self, fid, input_size):
        super().__init__()
        self.input_channels = 3
        self.input_height = input_size
        self.input_width = input_size
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, fid)
        self.Mixed_5c = InceptionA(256, 64, fid)
        self.Mixed_5d = InceptionA(288, 64, fid)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, fid)
        self.Mixed_6c = InceptionC(768, 160, fid)
        self.Mixed_6d = InceptionC(768, 160, fid)
        self.Mixed_6e = InceptionC(768, 192, fid)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, fid, False)
        self.Mixed_7c = InceptionE(2048, fid, fid)

    def forward(self, x):
        size = 299  # NETWORK_SIZE; TorchScript does not read module-level variables
        if x.shape[2] != size or x.shape[3] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, 2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x.mean((2, 3))


def load_state(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (parameter name -> tensor)")
    return {name.removeprefix("module."): tensor for name, tensor in state.items()}


def pick_variant(state, variant):
    if variant != "auto":
        return variant
    classes = state["fc.weight"].shape[0] if "fc.weight" in state else None
    if classes == 1008:
        return "fid"
    if classes == 1000:
        return "torchvision"
    raise ValueError(f"cannot tell the variant (fc layer of {classes} classes); pass --variant")


def build(state, variant, input_size):
    model = InceptionPool3(variant == "fid", input_size)
    ours = model.state_dict()
    # Batch-norm step counters do not affect evaluation; older weight files lack them.
    state = {**{name: tensor for name, tensor in ours.items()
                if name.endswith("num_batches_tracked")}, **state}
    missing = sorted(set(ours) - set(state))
    # The classifier and the auxiliary head are not part of the feature extractor.
    unexpected = sorted(name for name in set(state) - set(ours)
                        if not name.startswith(("fc.", "AuxLogits.")))
    if missing or unexpected:
        raise ValueError(f"not Inception-v3 weights: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for name, tensor in ours.items():
        if state[name].shape != tensor.shape:
            raise ValueError(f"{name} has shape {tuple(state[name].shape)}, "
                             f"expected {tuple(tensor.shape)}")
    model.load_state_dict({name: state[name] for name in ours})
    return model.eval()


def save(model, output, overwrite):
    if output.exists() and not overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it")
    scripted = torch.jit.script(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".tmp")
    torch.jit.save(scripted, str(temporary))
    os.replace(temporary, output)
    return scripted


def self_check():
    """Random weights through torchvision's Inception3 and through this script's export: the
    torchvision variant must give the same pool3 features, on 299 and on resized inputs."""
    import tempfile

    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True,
                                                transform_input=False)
    for module in reference.modules():  # non-trivial batch-norm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    reference.fc = nn.Identity()
    reference.eval()
    state = reference.state_dict()
    with tempfile.TemporaryDirectory() as folder:
        for size in (NETWORK_SIZE, 64):
            exported = save(build(state, "torchvision", size), Path(folder) / "net.pt", True)
            loaded = torch.jit.load(str(Path(folder) / "net.pt"))
            x = torch.rand(4, 3, size, size) * 2 - 1
            with torch.no_grad():
                resized = F.interpolate(x, size=(NETWORK_SIZE, NETWORK_SIZE), mode="bilinear",
                                        align_corners=False) if size != NETWORK_SIZE else x
                expected = reference(resized)
                got = loaded(x)
            error = (got - expected).abs().max().item() / expected.abs().max().item()
            assert got.shape == (4, 2048), got.shape
            declared = (loaded.input_channels, loaded.input_height, loaded.input_width)
            assert declared == (3, size, size), declared
            print(f"input {size}x{size}: max relative difference to torchvision {error:.2e}")
            if error > 1e-5:
                print("error: the export differs from torchvision's Inception3", file=sys.stderr)
                return 1
            del exported
        fid = build(state, "fid", NETWORK_SIZE)
        x = torch.rand(4, 3, NETWORK_SIZE, NETWORK_SIZE) * 2 - 1
        with torch.no_grad():
            expected = reference(x)
            difference = (fid(x) - expected).abs().max().item() / expected.abs().max().item()
        print(f"fid variant (different pooling): max relative difference to torchvision "
              f"{difference:.3g}")
        if difference == 0:
            print("error: the fid variant's pooling has no effect", file=sys.stderr)
            return 1
    print("self-check passed")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="Inception-v3 weights file (state dict)")
    parser.add_argument("--variant", choices=("auto", "fid", "torchvision"), default="auto")
    parser.add_argument("--input-size", type=int, default=NETWORK_SIZE,
                        help="the declared input height and width (default 299)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"TorchScript file to write (default {DEFAULT_OUTPUT})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--self-check", action="store_true",
                        help="compare the export with torchvision's Inception3 on random weights")
    args = parser.parse_args()
    if args.self_check:
        return self_check()
    if args.weights is None:
        parser.error("--weights FILE is needed (or --self-check)")
    if not 1 <= args.input_size <= 4096:
        parser.error("--input-size must be in [1, 4096]")
    if args.output.exists() and not args.overwrite:
        print(f"error: {args.output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    try:
        state = load_state(args.weights)
        variant = pick_variant(state, args.variant)
        save(build(state, variant, args.input_size), args.output, args.overwrite)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {args.weights}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: Inception-v3 ({variant} variant) pool3, 2048 features per "
          f"3x{args.input_size}x{args.input_size} image in [-1, 1]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
