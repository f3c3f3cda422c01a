"""Compiles one model into an AOTInductor package (.pt2): the Python half of `ddpm compile`.

`ddpm compile` (src/cli/compile_command.cpp) writes the model's weights (torch.load-able) and its
config into a folder and runs this script with torch's Python. It builds the network
(ddpm_unet.py, beside this file), loads the weights strictly, exports it with torch.export
(batch dimension dynamic, 1 .. --max-batch) and compiles it ahead of time with AOTInductor:
C++/OpenMP kernels on the CPU, Triton on CUDA. The package's metadata carries every string of
--metadata (the config, precision, device, torch version, ...), which the C++ loader reads back
(src/model/compiled_network.cpp). Sampling from the package needs no Python.

The package's inputs: x [B, C, H, W] float32, t [B] float32 (timestep indices, fractional for
Karras grids) and, for a class-conditional model, labels [B] int64. Its output: float32
[B, C or 2C, H, W]. In bf16 or fp16 the weights and activations are in that type inside.
"""

import argparse
import json
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddpm_unet import UNet, image_shape  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Denoiser(torch.nn.Module):
    """The network with its inputs and output in float32, whatever it computes in."""

    def __init__(self, unet, dtype):
        super().__init__()
        self.unet = unet
        self.dtype = dtype

    def forward(self, x, t, labels=None):
        return self.unet(x.to(self.dtype), t, labels).to(torch.float32)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="torch.load-able dict of the weights")
    parser.add_argument("--config", required=True, help="the model's config (our JSON)")
    parser.add_argument("--metadata", required=True, help="JSON object of strings to embed")
    parser.add_argument("--out", required=True, help="the .pt2 to write")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="compile threads (0: torch's)")
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    if arguments.threads > 0:
        torch.set_num_threads(arguments.threads)
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(arguments.threads))
    with open(arguments.config) as file:
        config = json.load(file)
    with open(arguments.metadata) as file:
        metadata = json.load(file)
    device = torch.device(arguments.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: this Python's torch sees no CUDA device")
    dtype = DTYPES[arguments.precision]

    unet = UNet(config["model"], config["data"])
    weights = torch.load(arguments.weights, map_location="cpu", weights_only=True)
    unet.load_state_dict(weights, strict=True)
    model = Denoiser(unet.to(device=device, dtype=dtype).eval(), dtype)

    example_batch = min(2, arguments.max_batch)
    x = torch.randn(example_batch, *image_shape(config["data"]), device=device)
    t = torch.full((example_batch,), 10.0, device=device)
    inputs = (x, t)
    batch = torch.export.Dim("batch", min=1, max=arguments.max_batch)
    shapes = [{0: batch}, {0: batch}]
    if config["model"].get("num_classes", 0) > 0:
        inputs += (torch.zeros(example_batch, dtype=torch.int64, device=device),)
        shapes.append({0: batch})
    if arguments.max_batch == 1:
        shapes = [None] * len(shapes)

    # Building the kernels for the CPU with a CUDA build of torch on a machine without CUDA is
    # fine; its "No CUDA runtime is found" warning is not for our users.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    with torch.no_grad():
        program = torch.export.export(model, inputs, dynamic_shapes=tuple(shapes), strict=False)
        metadata = {key: str(value) for key, value in metadata.items()}
        metadata["ddpm.torch_version"] = torch.__version__
        torch._inductor.aoti_compile_and_package(
            program,
            package_path=arguments.out,
            inductor_configs={"aot_inductor.metadata": metadata, "freezing": True},
        )


if __name__ == "__main__":
    main()
