#!/usr/bin/env python3
"""Benchmarks our DDPM network in diffusers: the Python peer of `ddpm bench`.

Builds diffusers' UNet2DModel from one of our JSON configs (the same network, parameter for
parameter, as tests/diffusers_crosscheck.py proves) and times either training steps or reverse
sampling steps, eagerly or under torch.compile.

train:  per step what our trainer does: x0 (a random batch in [-1, 1], made once, on the device),
        t ~ U{0..T-1} and eps ~ N(0, I) (drawn on the CPU, moved to the device, as our trainer
        does), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, loss = mse(model(x_t, t), eps),
        zero_grad(set_to_none), backward, clip_grad_norm_ (its norm read on the host), Adam,
        EMA update with torch._foreach_lerp_. Model in train mode (dropout on). The learning
        rate is constant (our warm-up schedule changes a number, not the work).
sample: the loop of diffusers' DDPMPipeline (DDPMScheduler, linear betas, fixed_large,
        clip_sample) or DDIMPipeline (DDIMScheduler, eta 0, clip_sample), without the PIL
        conversion, in eval mode under torch.inference_mode. The DDPM chain has T steps; only
        the first --sample-steps of them are run, and images/s is extrapolated to the whole
        chain. The DDIM chain has --sample-steps steps. Timed steps cycle through those steps,
        starting a fresh chain (new noise) when they run out.

Warm-up steps (which include torch.compile's compilation) are excluded from the timing; the
first warm-up step's time, less a timed step's, is printed as the compile time. The timed steps
run as --rounds rounds of --steps steps; the figure is the median round. With --sync (the
protocol of `ddpm bench --sync`, driven by dev/bench_compare.py) it prints `ready` after the
warm-up, then starts each round on a line from stdin, prints `round IMAGES_PER_S` after it, and
finishes when stdin closes.
Exit codes: 0 success, 2 a usage or config error (or stdin closed early under --sync), 1 a
runtime failure.
"""
import argparse
import copy
import json
import math
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

PRECISIONS = ("fp32", "bf16")
SAMPLERS = ("ddpm", "ddim")


class UsageError(Exception):
    """A user error: reported as one line, exit code 2."""


class SyncInputClosed(Exception):
    """--sync: stdin ended before every round had started (the driver died or sent too few
    lines); exit code 2, as `ddpm bench --sync`."""


# ---------------------------------------------------------------------------------------------
# Config: our JSON config, with the defaults of src/config/config.h for the keys used here.

DEFAULTS = {
    "data": {"image_size": 32, "channels": 3},
    "model": {"base_channels": 128, "channel_mult": [1, 2, 2, 2], "num_res_blocks": 2,
              "attention_resolutions": [16], "attention_heads": 1, "dropout": 0.1,
              "norm_groups": 32},
    "diffusion": {"timesteps": 1000, "schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02},
    "train": {"batch_size": 128, "lr": 2e-4, "adam_beta1": 0.9, "adam_beta2": 0.999,
              "adam_eps": 1e-8, "weight_decay": 0.0, "grad_clip": 1.0, "ema_decay": 0.9999,
              "seed": 0},
    "sample": {"sampler": "ddpm", "steps": 1000, "batch_size": 64, "seed": 0},
}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_config(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}" if not path.exists()
                         else f"config path is not a file: {path}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read config {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: "
                         f"{error.msg}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: the config must be a JSON object")

    config = {}
    for section, defaults in DEFAULTS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise UsageError(f"{path}: '{section}' must be an object")
        config[section] = {**defaults, **{k: v for k, v in given.items() if k in defaults}}

    def fail(key, what):
        raise UsageError(f"{path}: {key} {what}")

    data, model, diffusion, train = (config[s] for s in ("data", "model", "diffusion", "train"))
    size = data["image_size"]
    if _is_int(size):
        if size < 1:
            fail("data.image_size", "must be positive")
    elif not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        fail("data.image_size", "must be a positive integer or [height, width]")
    if not (_is_int(data["channels"]) and data["channels"] >= 1):
        fail("data.channels", "must be a positive integer")
    for key in ("base_channels", "num_res_blocks", "attention_heads", "norm_groups"):
        if not (_is_int(model[key]) and model[key] >= 1):
            fail(f"model.{key}", "must be a positive integer")
    for key in ("channel_mult", "attention_resolutions"):
        value = model[key]
        if not (isinstance(value, list) and all(_is_int(v) and v > 0 for v in value)):
            fail(f"model.{key}", "must be a list of positive integers")
    if not model["channel_mult"]:
        fail("model.channel_mult", "must not be empty")
    if not (_is_number(model["dropout"]) and 0 <= model["dropout"] < 1):
        fail("model.dropout", "must be in [0, 1)")
    if diffusion["schedule"] != "linear":
        fail("diffusion.schedule", f"is '{diffusion['schedule']}': this benchmark builds only "
             "the linear schedule (the schedule does not change the work per step)")
    if not (_is_int(diffusion["timesteps"]) and diffusion["timesteps"] >= 1):
        fail("diffusion.timesteps", "must be a positive integer")
    for key in ("beta_start", "beta_end"):
        if not (_is_number(diffusion[key]) and 0 < diffusion[key] < 1):
            fail(f"diffusion.{key}", "must be in (0, 1)")
    for key in ("lr", "adam_beta1", "adam_beta2", "adam_eps", "weight_decay", "grad_clip",
                "ema_decay"):
        if not _is_number(train[key]):
            fail(f"train.{key}", "must be a number")
    if not (_is_int(train["batch_size"]) and train["batch_size"] >= 1):
        fail("train.batch_size", "must be a positive integer")
    return config


# ---------------------------------------------------------------------------------------------
# The network: our config as a UNet2DModel with the same parameter names, shapes and outputs as
# our UNet. tests/diffusers_crosscheck.py uses this function and proves the mapping.

def diffusers_model(config, UNet2DModel):
    model = config["model"]
    size = config["data"]["image_size"]
    height, width = (size, size) if isinstance(size, int) else size
    levels = len(model["channel_mult"])
    widths = [model["base_channels"] * m for m in model["channel_mult"]]
    attention = [(min(height, width) >> level) in model["attention_resolutions"]
                 for level in range(levels)]
    head_channels = model.get("attention_head_channels", 0)
    if head_channels:
        head_dim = head_channels
    else:
        head_dims = {widths[level] // model["attention_heads"]
                     for level in range(levels) if attention[level]}
        head_dims.add(widths[-1] // model["attention_heads"])
        if len(head_dims) != 1:
            raise UsageError("diffusers takes one attention head width for every level; this "
                             f"config's attention levels have head widths {sorted(head_dims)}")
        head_dim = head_dims.pop()
    return UNet2DModel(
        sample_size=(height, width),
        in_channels=config["data"]["channels"],
        out_channels=config["data"]["channels"],
        block_out_channels=tuple(widths),
        layers_per_block=model["num_res_blocks"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        attention_head_dim=head_dim,
        norm_num_groups=model["norm_groups"],
        norm_eps=model.get("norm_eps", 1e-6),
        downsample_padding=1 if model.get("downsample_padding") == "symmetric" else 0,
        flip_sin_to_cos=model.get("time_embedding_order", "sin_cos") == "cos_sin",
        freq_shift=model.get("time_embedding_shift", 1),
        act_fn="silu",
        time_embedding_type="positional",
        dropout=float(model["dropout"]),
    )


# ---------------------------------------------------------------------------------------------
# Arguments.

def int_at_least(minimum):
    """An argparse type: an integer >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="bench_diffusers.py",
        description="Time our DDPM UNet in diffusers (UNet2DModel): the Python peer of "
                    "`ddpm bench`.",
        epilog="Exit codes: 0 success, 2 a usage or config error, 1 a runtime failure.")
    parser.add_argument("--config", required=True, metavar="FILE", help="our JSON config")
    parser.add_argument("--mode", required=True, choices=("train", "sample"),
                        help="time training steps or reverse sampling steps")
    parser.add_argument("--batch", type=positive_int, metavar="B",
                        help="batch size (default: train.batch_size or sample.batch_size)")
    parser.add_argument("--steps", type=positive_int, metavar="K",
                        help="timed steps per round: training steps, or reverse steps in sample "
                             "mode (default: 20 for train; one pass of --sample-steps for sample)")
    parser.add_argument("--rounds", type=positive_int, default=1, metavar="R",
                        help="timed rounds of --steps steps; the figure is their median "
                             "(default: 1)")
    parser.add_argument("--sync", action="store_true",
                        help="print 'ready' after the warm-up (and compilation), then start each "
                             "round on a line from stdin, print 'round IMAGES_PER_S' after it, "
                             "and finish when stdin closes (for dev/bench_compare.py)")
    parser.add_argument("--warmup", type=non_negative_int, metavar="W",
                        help="untimed warm-up steps before the timing; they include "
                             "compilation (default: 2, or 3 with --compile)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: torch.autocast(dtype=bfloat16) around the forward pass "
                             "(and the loss) (default: fp32)")
    parser.add_argument("--compile", action="store_true",
                        help="model = torch.compile(model) (default mode)")
    parser.add_argument("--sampler", choices=SAMPLERS,
                        help="sample mode: DDPM ancestral or DDIM (eta 0) "
                             "(default: sample.sampler of the config)")
    parser.add_argument("--sample-steps", type=positive_int, metavar="S",
                        help="sample mode: DDIM chain length (set_timesteps(S); default: "
                             "sample.steps when the config's sampler is ddim, else 50); DDPM: run "
                             "only the first S of the T steps, extrapolated to T (default: T)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help=f"torch.set_num_threads (default: os.cpu_count() = {os.cpu_count()})")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="default: cuda when available, else cpu")
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON here")
    return parser, parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Benchmarks.

def synchronize(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wait_for_go():
    # Any line starts a round; only its arrival matters (the driver times nothing itself).
    if not sys.stdin.readline():
        raise SyncInputClosed("--sync: standard input closed before every round had started; "
                              "send one line per round (or run without --sync)")


def timed_rounds(torch, device, step, args, images_per_round):
    """Runs args.warmup calls of step(i), then args.rounds rounds of args.steps calls (i counts
    on across them). Returns (warm-up step times, images/s of each round, seconds of each
    round). With --sync, each round waits for a line on stdin and its images/s is printed."""
    warmup_times = []
    for i in range(args.warmup):
        synchronize(torch, device)
        start = time.perf_counter()
        step(i)
        synchronize(torch, device)
        warmup_times.append(time.perf_counter() - start)
    if args.sync:
        print("ready", flush=True)
    rates, round_seconds = [], []
    i = args.warmup
    for _ in range(args.rounds):
        if args.sync:
            wait_for_go()
        synchronize(torch, device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(i)
            i += 1
        synchronize(torch, device)
        round_seconds.append(time.perf_counter() - start)
        rates.append(images_per_round / round_seconds[-1])
        if args.sync:
            print(f"round {rates[-1]!r}", flush=True)
    if args.sync:
        # Finish only when the driver closes stdin, after every process's last round: tearing
        # down (torch.compile's worker processes) must not overlap another process's round.
        sys.stdin.read()
    return warmup_times, rates, round_seconds


def bench_train(torch, model, config, args, device):
    train = config["train"]
    data = config["data"]
    size = data["image_size"]
    height, width = (size, size) if isinstance(size, int) else size
    T = config["diffusion"]["timesteps"]
    betas = torch.linspace(config["diffusion"]["beta_start"], config["diffusion"]["beta_end"], T,
                           dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sqrt_abar = alphas_cumprod.sqrt().float().to(device)
    sqrt_one_minus_abar = (1.0 - alphas_cumprod).sqrt().float().to(device)

    ema_model = copy.deepcopy(model)
    ema_parameters = list(ema_model.parameters())
    for parameter in ema_parameters:
        parameter.requires_grad_(False)
    model.train()
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=train["lr"],
                                 betas=(train["adam_beta1"], train["adam_beta2"]),
                                 eps=train["adam_eps"], weight_decay=train["weight_decay"])
    network = torch.compile(model) if args.compile else model
    clip = train["grad_clip"] if train["grad_clip"] > 0 else math.inf
    ema_weight = 1.0 - train["ema_decay"]

    generator = torch.Generator().manual_seed(int(train["seed"]))
    shape = (args.batch, data["channels"], height, width)
    x0 = (torch.rand(shape, generator=generator) * 2 - 1).to(device)
    bf16 = args.precision == "bf16"
    skipped = [0]

    def step(_):
        t = torch.randint(0, T, (args.batch,), generator=generator).to(device)
        eps = torch.randn(shape, generator=generator).to(device)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            x_t = sqrt_abar[t].view(-1, 1, 1, 1) * x0 + sqrt_one_minus_abar[t].view(-1, 1, 1, 1) * eps
            predicted = network(x_t, t).sample
            loss = torch.nn.functional.mse_loss(predicted.float(), eps.float())
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, clip))
        if math.isfinite(grad_norm):
            optimizer.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema_parameters, parameters, ema_weight)
        else:
            optimizer.zero_grad(set_to_none=True)
            skipped[0] += 1

    timing = timed_rounds(torch, device, step, args, images_per_round=args.steps * args.batch)
    if skipped[0]:
        print(f"warning: {skipped[0]} steps had a non-finite gradient norm and were skipped",
              file=sys.stderr)
    return {}, *timing


def bench_sample(torch, model, config, args, device):
    from diffusers import DDIMScheduler, DDPMScheduler

    diffusion = config["diffusion"]
    T = diffusion["timesteps"]
    schedule = dict(num_train_timesteps=T, beta_start=float(diffusion["beta_start"]),
                    beta_end=float(diffusion["beta_end"]), beta_schedule="linear",
                    clip_sample=True)
    if args.sampler == "ddpm":
        scheduler = DDPMScheduler(variance_type="fixed_large", **schedule)
        scheduler.set_timesteps(T)
        chain = T
        step_kwargs = {}
    else:
        # As DDIMPipeline: DDIMScheduler.from_config(DDPMScheduler config), eta 0.
        scheduler = DDIMScheduler(**schedule)
        scheduler.set_timesteps(args.sample_steps)
        chain = len(scheduler.timesteps)
        step_kwargs = {"eta": 0.0, "use_clipped_model_output": None}
    window = list(scheduler.timesteps[:args.sample_steps])

    model.eval()
    network = torch.compile(model) if args.compile else model
    unet_config = model.config
    size = unet_config.sample_size
    shape = ((args.batch, unet_config.in_channels, size, size) if isinstance(size, int)
             else (args.batch, unet_config.in_channels, *size))
    generator = torch.Generator(device=device).manual_seed(int(config["sample"]["seed"]))
    bf16 = args.precision == "bf16"
    state = {"image": None, "position": 0}

    def new_chain():
        state["image"] = torch.randn(shape, generator=generator, device=device,
                                     dtype=model.dtype)
        state["position"] = 0

    def step(_):
        if state["position"] == len(window):
            new_chain()
        t = window[state["position"]]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model_output = network(state["image"], t).sample
        state["image"] = scheduler.step(model_output.float(), t, state["image"],
                                        generator=generator, **step_kwargs).prev_sample
        state["position"] += 1

    with torch.inference_mode():
        new_chain()
        warmup_steps = args.warmup

        def run(i):
            if i == warmup_steps:
                new_chain()  # the timing starts on a fresh chain
            step(i)

        # A round of --steps reverse steps is worth that fraction of a chain of `chain` steps.
        warmup_times, rates, round_seconds = timed_rounds(
            torch, device, run, args, images_per_round=args.batch * args.steps / chain)
    result = {"sampler": args.sampler, "chain_steps": chain, "sample_steps_run": len(window),
              "seconds_per_step": statistics.median(round_seconds) / args.steps}
    return result, warmup_times, rates, round_seconds


def peak_memory_bytes(torch, device):
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if platform.system() == "Darwin" else peak * 1024)  # Linux: KiB


def main(argv=None):
    parser, args = parse_args(argv)
    try:
        config = load_config(args.config)
    except UsageError as error:
        parser.exit(2, f"bench_diffusers.py: error: {error}\n")

    try:
        import torch
        import diffusers
        from diffusers import UNet2DModel
    except ImportError as error:
        parser.exit(1, f"bench_diffusers.py: error: {error}; install torch and diffusers "
                       "(scripts/setup.sh --test puts them in the project's .venv)\n")

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch has no usable CUDA device")
    device = torch.device(args.device)
    if args.batch is None:
        args.batch = config["train" if args.mode == "train" else "sample"]["batch_size"]
        if not (_is_int(args.batch) and args.batch >= 1):
            parser.error(f"{args.mode}.batch_size in the config must be a positive integer")
    if args.json and not pathlib.Path(args.json).resolve().parent.is_dir():
        parser.error(f"--json {args.json}: its folder does not exist")
    if args.warmup is None:
        args.warmup = 3 if args.compile else 2
    if args.compile and args.warmup < 1:
        parser.error("--compile needs --warmup >= 1: compilation happens in the first step "
                     "and must not be timed")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    if args.mode == "train":
        for option in ("sampler", "sample_steps"):
            if getattr(args, option) is not None:
                parser.error(f"--{option.replace('_', '-')} applies to --mode sample only")
        if args.steps is None:
            args.steps = 20
    else:
        sample = config["sample"]
        if args.sampler is None:
            args.sampler = sample["sampler"]
            if args.sampler not in SAMPLERS:
                parser.error(f"sample.sampler in the config is '{args.sampler}'; "
                             "expected ddpm or ddim")
        T = config["diffusion"]["timesteps"]
        if args.sample_steps is None:
            if args.sampler == "ddpm":
                args.sample_steps = T
            elif sample["sampler"] == "ddim" and _is_int(sample["steps"]) and sample["steps"] >= 1:
                args.sample_steps = sample["steps"]
            else:
                args.sample_steps = 50
        if args.sample_steps > T:
            parser.error(f"--sample-steps {args.sample_steps} exceeds diffusion.timesteps {T}")
        if args.steps is None:
            args.steps = args.sample_steps

    try:
        model = diffusers_model(config, UNet2DModel)
    except UsageError as error:
        parser.exit(2, f"bench_diffusers.py: error: {args.config}: {error}\n")
    except ValueError as error:  # diffusers' own checks of the block layout
        parser.exit(2, f"bench_diffusers.py: error: {args.config}: diffusers refuses this "
                       f"model: {error}\n")
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())

    bench = bench_train if args.mode == "train" else bench_sample
    try:
        result, warmup_times, rates, round_seconds = bench(torch, model, config, args, device)
    except SyncInputClosed as error:
        parser.exit(2, f"bench_diffusers.py: error: {error}\n")
    seconds = sum(round_seconds)
    step_seconds = statistics.median(round_seconds) / args.steps
    compile_seconds = max(0.0, warmup_times[0] - step_seconds) if args.compile else None

    rate_key = "train_images_per_s" if args.mode == "train" else "sample_images_per_s"
    record = {
        "peer": "diffusers",
        "compiled": bool(args.compile),
        "mode": args.mode,
        "config": str(args.config),
        "batch": args.batch,
        "precision": args.precision,
        "device": str(device),
        "threads": threads,
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "parameters": parameters,
        rate_key: statistics.median(rates),
        "rounds": rates,
        "peak_memory_bytes": peak_memory_bytes(torch, device),
        "seconds": seconds,
        "steps": args.steps,
        "warmup": args.warmup,
        "warmup_step_seconds": warmup_times,
        "compile_seconds": compile_seconds,
        **result,
    }

    what = (f"{args.sampler} sampling ({record['sample_steps_run']} of {record['chain_steps']} "
            f"steps run, extrapolated)" if args.mode == "sample" else "training")
    print(f"diffusers {what}: {record[rate_key]:.4g} images/s | batch {args.batch}, "
          f"{args.precision}, {'compiled' if args.compile else 'eager'}, {device}, "
          f"{threads} threads | {args.rounds} x {args.steps} steps in {seconds:.2f} s "
          f"(median {1000 * step_seconds:.1f} ms/step) | peak memory "
          f"{record['peak_memory_bytes'] / 2**20:.1f} MiB | {parameters:,} parameters")
    if args.compile:
        print(f"compile: {compile_seconds:.2f} s (first warm-up step {warmup_times[0]:.2f} s "
              f"less one timed step; warm-up steps: "
              f"{', '.join(f'{t:.3f}' for t in warmup_times)} s)")
    if args.json:
        try:
            pathlib.Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        except OSError as error:
            parser.exit(1, f"bench_diffusers.py: error: cannot write {args.json}: {error}\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
