#!/usr/bin/env python3
"""Hugging Face interop, end to end against diffusers: model folders that diffusers writes are
sampled, imported, exported and fine-tuned from by `ddpm`, and the results compared with
diffusers' own.

Folders, built here with random weights (the real Hub files cannot be downloaded on our
machines):
  cifar10_flat          google/ddpm-cifar10-32's layout and configs as published
                        (tests/data/google-ddpm-cifar10-32; flat: config.json,
                        scheduler_config.json, model_index.json, safetensors)
  cifar10_bin           the same weights as diffusion_pytorch_model.bin (torch.save)
  cifar10_legacy        the same weights under the legacy attention names (query, key, value,
                        proj_attn) of diffusers' original-checkpoint converter, as .bin
  celebahq256_sharded   google/ddpm-celebahq-256's layout (block_out_channels 128, 128, 256, 256,
                        512, 512 scaled down to 32, 32, 64, 64, 128, 128; attention at 16;
                        fixed_small), weights sharded over several safetensors files
  celebahq256_sharded_bin  the same, sharded over several .bin files
  unconditional_pipeline  train_unconditional.py's architecture with UNet2DModel's defaults
                        (heads of 8 channels, GroupNorm eps 1e-5, cos/sin time embedding without
                        shift, symmetric downsampling padding; channels scaled down to 32 ... 128),
                        saved by DDPMPipeline.save_pretrained (model_index.json, unet/, scheduler/)

For each: our epsilon-prediction equals UNet2DModel's on the same input within 1e-5 (float32,
absolute); deterministic DDIM (eta 0) from the same x_T (`ddpm sample --noise`) gives the same
8-bit images as diffusers' DDIMScheduler loop over the same timesteps (at most 1/255 apart).
DDIMScheduler runs with use_clipped_model_output=True, which is what ddpm's DDIM does with a
clipped x0 (guided-diffusion's ddim_sample).

An improved-DDPM pipeline (out_channels twice in_channels, DDPMScheduler with variance_type
learned_range): the same outputs, and `ddpm sample --sampler ddpm` gives diffusers' DDPMScheduler
loop's 8-bit images from the same x_T and noise (at most 1/255 apart).

Then: import -> export -> diffusers loads the folder with no missing or unexpected keys and gives
the same epsilon, and DDPMPipeline runs it; -> import again -> identical weights. The same for a
run that `ddpm train` wrote. `ddpm train --init-from` starts from a diffusers folder's weights,
and refuses a model section that differs, naming the key. A student of `ddpm distill` exports as
a DDIMPipeline on its trailing grid, and diffusers' DDIM loop gives `ddpm sample`'s images.
"""
import argparse
import inspect
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import torch

try:
    import diffusers
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
    from diffusers.schedulers import scheduling_ddpm
    from PIL import Image
except ImportError:
    sys.exit("diffusers is not installed in this Python: run `pip install diffusers` "
             "(scripts/setup.sh --test does it in the project's virtual environment)")

EPS_TOLERANCE = 1e-5      # absolute, float32
PIXEL_TOLERANCE = 1       # 8-bit levels: 1/255
THREADS = os.cpu_count() or 1

# google/ddpm-cifar10-32's config.json, scheduler_config.json and model_index.json as published
# (only these keys, so that every absent one takes diffusers' default).
GOOGLE_CONFIGS = pathlib.Path(__file__).resolve().parent / "data" / "google-ddpm-cifar10-32"
GOOGLE_CIFAR10_UNET = json.loads((GOOGLE_CONFIGS / "config.json").read_text())
GOOGLE_SCHEDULER = json.loads((GOOGLE_CONFIGS / "scheduler_config.json").read_text())
GOOGLE_MODEL_INDEX = json.loads((GOOGLE_CONFIGS / "model_index.json").read_text())
CELEBAHQ_256_UNET = dict(
    GOOGLE_CIFAR10_UNET, block_out_channels=[32, 32, 64, 64, 128, 128], sample_size=256,
    down_block_types=["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4)
LEGACY_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def public_fields(config):
    return {k: v for k, v in config.items() if not k.startswith("_")}


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2))


def random_unet(config, seed):
    torch.manual_seed(seed)
    model = UNet2DModel(**public_fields(config)).eval()
    with torch.no_grad():  # weights of trained size, so that no layer is near zero
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


def flat_folder(folder, model, unet_config, scheduler_config, weights="safetensors",
                legacy=False):
    """A google/ddpm-* style folder: the configs as published, then the weights."""
    folder.mkdir(parents=True)
    if weights in ("sharded", "sharded_bin"):
        model.save_pretrained(folder, max_shard_size="300KB",
                              safe_serialization=weights == "sharded")
    else:
        model.save_pretrained(folder, safe_serialization=weights == "safetensors")
    if legacy:
        state = model.state_dict()
        renamed = {}
        for name, tensor in state.items():
            for new, old in LEGACY_NAMES.items():
                if ".attentions." in name and f".{new}." in name:
                    name = name.replace(f".{new}.", f".{old}.")
            renamed[name] = tensor
        assert renamed.keys() != state.keys()
        torch.save(renamed, folder / "diffusion_pytorch_model.bin")
    write_json(folder / "config.json", unet_config)
    write_json(folder / "scheduler_config.json", scheduler_config)
    write_json(folder / "model_index.json", GOOGLE_MODEL_INDEX)


def run(command, expect_code=0):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != expect_code:
        sys.exit(f"{' '.join(map(str, command))}\nexited {result.returncode}, expected "
                 f"{expect_code}:\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


class Checker:
    def __init__(self, args):
        self.ddpm = args.ddpm
        self.predictor = args.predictor
        self.workdir = args.workdir

    def ddpm_run(self, *arguments, expect_code=0):
        return run([self.ddpm, *arguments, "--threads", THREADS], expect_code)

    def our_eps(self, source, x, t, channels_last=False, labels=None):
        input_file = self.workdir / "eps_input.pt"
        output_file = self.workdir / "eps_output.pt"
        torch.save({"x": x, "t": t} if labels is None else {"x": x, "t": t, "labels": labels},
                   input_file)
        run([self.predictor, source, input_file, output_file] +
            (["--channels-last"] if channels_last else []))
        return torch.load(output_file, weights_only=True)

    def check_eps(self, name, source, model, seed=0):
        config = model.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(3, config.in_channels, height, width, generator=generator)
        t = torch.tensor([0, 421, 999])
        with torch.no_grad():
            theirs = model(x, t).sample
        scale = theirs.abs().max().item()
        assert scale > 1e-2, f"{name}: diffusers' output is ~0, the comparison would prove nothing"
        errors = []
        for channels_last in (False, True):
            ours = self.our_eps(source, x, t, channels_last)
            errors.append((ours - theirs).abs().max().item())
        print(f"{name}: max |eps ours - diffusers| = {errors[0]:.2e} (NCHW), {errors[1]:.2e} "
              f"(channels-last), output scale {scale:.3f}")
        assert max(errors) <= EPS_TOLERANCE, f"{name}: epsilon differs by {max(errors)}"

    def check_ddim(self, name, source, model, scheduler_config, steps, images=2):
        config = model.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        noise = torch.randn(images, config.in_channels, height, width,
                            generator=torch.Generator().manual_seed(5))
        noise_file = self.workdir / f"{name}_noise.pt"
        torch.save(noise, noise_file)
        out = self.workdir / f"{name}_ddim"
        self.ddpm_run("sample", "--checkpoint", source, "--out", out, "--noise", noise_file,
                      "--num", images, "--batch", images, "--sampler", "ddim", "--steps", steps,
                      "--eta", 0, "--device", "cpu")  # diffusers runs on the CPU here too
        ours = np.stack([np.asarray(Image.open(out / f"sample_{k:05d}.png")).astype(np.int32)
                         for k in range(images)])
        if ours.ndim == 3:
            ours = ours[..., None]

        scheduler = DDIMScheduler.from_config(scheduler_config)
        scheduler.set_timesteps(steps)
        x = noise.clone()
        with torch.no_grad():
            for timestep in scheduler.timesteps:
                eps = model(x, timestep).sample
                x = scheduler.step(eps, timestep, x, eta=0.0,
                                   use_clipped_model_output=True).prev_sample
        theirs = ((x / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.int32)
        theirs = theirs.permute(0, 2, 3, 1).numpy()
        difference = np.abs(ours - theirs).max()
        timesteps = scheduler.timesteps.tolist()
        print(f"{name}: DDIM {steps} steps (timesteps {timesteps[0]} .. {timesteps[-1]}), "
              f"max pixel difference {difference}/255, {np.mean(ours != theirs) * 100:.3f}% of "
              f"pixels differ")
        assert difference <= PIXEL_TOLERANCE, f"{name}: DDIM images differ by {difference}/255"

    def check_ddpm_learned(self, name, source, model, scheduler_config, steps, images=2, seed=7):
        """Ancestral sampling with learned variances: `ddpm sample --sampler ddpm` against
        DDPMScheduler(variance_type="learned_range") on the same weights, with our x_T and our
        noise (image k's generator is seeded with splitmix64(splitmix64(seed) + k) and draws x_T,
        then each step's z), as 8-bit images."""
        config = model.config
        size = config.sample_size
        shape = (config.in_channels, size, size)
        out = self.workdir / f"{name}_ddpm"
        self.ddpm_run("sample", "--checkpoint", source, "--out", out, "--num", images, "--batch",
                      images, "--sampler", "ddpm", "--steps", steps, "--seed", seed,
                      "--device", "cpu")
        ours = np.stack([np.asarray(Image.open(out / f"sample_{k:05d}.png")).astype(np.int32)
                         for k in range(images)])
        if ours.ndim == 3:
            ours = ours[..., None]
        mask = (1 << 64) - 1

        def splitmix64(value):
            value = (value + 0x9E3779B97F4A7C15) & mask
            value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & mask
            value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & mask
            return value ^ (value >> 31)

        generators = [torch.Generator().manual_seed(splitmix64((splitmix64(seed) + k) & mask))
                      for k in range(images)]
        draw = lambda: torch.stack([torch.randn(shape, generator=g) for g in generators])
        x = draw()
        scheduler = DDPMScheduler.from_config(scheduler_config)
        assert scheduler.config.variance_type == "learned_range"
        scheduler.set_timesteps(steps)
        original = scheduling_ddpm.randn_tensor
        scheduling_ddpm.randn_tensor = lambda shape, **kw: draw()
        try:
            with torch.no_grad():
                for timestep in scheduler.timesteps:
                    output = model(x, timestep).sample
                    assert output.shape[1] == 2 * x.shape[1]
                    x = scheduler.step(output, timestep, x).prev_sample
        finally:
            scheduling_ddpm.randn_tensor = original
        theirs = ((x / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.int32)
        theirs = theirs.permute(0, 2, 3, 1).numpy()
        difference = np.abs(ours - theirs).max()
        print(f"{name}: DDPM {steps} steps with learned variances, max pixel difference "
              f"{difference}/255, {np.mean(ours != theirs) * 100:.3f}% of pixels differ")
        assert difference <= PIXEL_TOLERANCE, f"{name}: DDPM images differ by {difference}/255"

    def check_export_round_trip(self, name, source, reference_model=None):
        """source -> import (if a folder) -> export -> diffusers -> import: same weights."""
        source = pathlib.Path(source)
        if (source / "checkpoints").is_dir():  # a run directory: its latest checkpoint
            checkpoint = source / "checkpoints" / (source / "checkpoints" /
                                                   "latest").read_text().strip()
        else:
            checkpoint = self.workdir / f"{name}_imported.pt"
            self.ddpm_run("import", source, "--out", checkpoint)
        exported = self.workdir / f"{name}_exported"
        self.ddpm_run("export", "--checkpoint", checkpoint, "--out", exported)
        unet_config = json.loads((exported / "unet" / "config.json").read_text())
        fields = set(inspect.signature(UNet2DModel.__init__).parameters) - {"self"}
        missing_fields = fields - set(unet_config)
        assert not missing_fields, f"{name}: unet/config.json leaves out {sorted(missing_fields)}"

        model, info = UNet2DModel.from_pretrained(exported, subfolder="unet",
                                                  output_loading_info=True,
                                                  low_cpu_mem_usage=False)
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            assert not info[key], f"{name}: diffusers reports {key}: {info[key]}"
        model.eval()
        size = model.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        x = torch.randn(2, model.config.in_channels, height, width,
                        generator=torch.Generator().manual_seed(3))
        t = torch.tensor([7, 700])
        # A class-conditional model: a class, and the last row ("no class").
        classes = model.config.num_class_embeds
        labels = None if classes is None else torch.tensor([0, classes - 1])
        with torch.no_grad():
            theirs = model(x, t, class_labels=labels).sample
            if reference_model is not None:
                original = reference_model(x, t, class_labels=labels).sample
                assert torch.equal(theirs, original), f"{name}: the exported model differs"
        ours = self.our_eps(checkpoint, x, t, labels=labels)
        error = (ours - theirs).abs().max().item()
        assert error <= EPS_TOLERANCE, f"{name}: exported epsilon differs by {error}"

        if classes is None:  # DDPMPipeline has no class labels to give
            pipeline = DDPMPipeline.from_pretrained(exported, low_cpu_mem_usage=False)
            pipeline.set_progress_bar_config(disable=True)
            images = pipeline(batch_size=1, num_inference_steps=2, output_type="np",
                              generator=torch.Generator().manual_seed(0)).images
            assert images.shape == (1, height, width, model.config.in_channels)
            assert np.isfinite(images).all()

        again = self.workdir / f"{name}_reimported.pt"
        self.ddpm_run("import", exported, "--out", again)
        before = torch.load(checkpoint, weights_only=True)
        after = torch.load(again, weights_only=True)
        assert before["ema"].keys() == after["ema"].keys()
        for key, tensor in before["ema"].items():
            assert torch.equal(tensor, after["ema"][key]), f"{name}: {key} changed"
        config_before, config_after = json.loads(before["config"]), json.loads(after["config"])
        for section in ("data", "model", "diffusion"):
            keys = [k for k in config_before[section] if k != "path"]
            assert {k: config_before[section][k] for k in keys} == \
                   {k: config_after[section][k] for k in keys}, f"{name}: {section} changed"
        print(f"{name}: export -> diffusers (no missing or unexpected keys, |eps| diff "
              f"{error:.2e}" + (", DDPMPipeline ran" if classes is None else
                                f", class_labels {labels.tolist()} of {classes} embeddings") +
              ") -> import: identical weights and model config")

    def check_init_from(self, folder, model):
        size = model.config.sample_size
        images = self.workdir / "finetune_images"
        images.mkdir()
        rng = np.random.default_rng(0)
        for k in range(4):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / f"image_{k}.png")
        config_text = self.ddpm_run("config", "--checkpoint", folder)
        config = json.loads(config_text[config_text.index("{"):])
        config["train"].update({"batch_size": 2, "steps": 1, "lr": 1e-9, "warmup_steps": 0,
                                "sample_every": 0, "checkpoint_every": 1, "device": "cpu"})
        config["model"]["dropout"] = 0.1  # training-only: may differ from the source's
        config_file = self.workdir / "finetune.json"
        write_json(config_file, config)
        run_dir = self.workdir / "finetune_run"
        self.ddpm_run("train", "--config", config_file, "--data", images, "--out", run_dir,
                      "--init-from", folder)
        checkpoint = torch.load(run_dir / "checkpoints" / "step_000000001.pt", weights_only=True)
        assert "diffusers folder" in checkpoint["source"], checkpoint.get("source")
        state = model.state_dict()
        drift = max((checkpoint["model"][k] - v).abs().max().item() for k, v in state.items())
        assert drift < 1e-6, f"--init-from: weights moved {drift} in one step at lr 1e-9"
        # The model section must match: the first differing key is named.
        message = self.ddpm_run("train", "--config", config_file, "--data", images, "--out",
                                self.workdir / "finetune_refused", "--init-from", folder,
                                "--set", "model.norm_eps=1e-6", expect_code=2)
        assert "model.norm_eps" in message and "--init-from" in message, message
        print(f"train --init-from: started from the folder's weights (max drift {drift:.1e} "
              f"after one step at lr 1e-9), source recorded; a different model.norm_eps refused")

    def check_distilled_student(self):
        """A student of `ddpm distill` (one round, 8 -> 4 steps, of a 2-step v-prediction run)
        exports as a DDIMPipeline whose DDIMScheduler visits the student's trailing grid, and
        diffusers' DDIM loop on it gives `ddpm sample`'s 8-bit images."""
        run_dir = self.workdir / "own_run"  # check_own_run's
        images = self.workdir / "own_images"
        student_run = self.workdir / "distilled"
        self.ddpm_run("distill", "--teacher", run_dir, "--data", images, "--out", student_run,
                      "--set", "distill.start_steps=8", "--set", "distill.end_steps=4",
                      "--set", "distill.steps_per_round=2", "--set", "train.sample_every=0")
        folder = self.workdir / "distilled_exported"
        self.ddpm_run("export", "--checkpoint", student_run / "rounds" / "steps_004",
                      "--out", folder)
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == "DDIMPipeline", index
        pipeline = DDIMPipeline.from_pretrained(folder)
        scheduler_config = dict(pipeline.scheduler.config)
        assert scheduler_config["timestep_spacing"] == "trailing", scheduler_config
        pipeline.scheduler.set_timesteps(4)
        timesteps = pipeline.scheduler.timesteps.tolist()
        assert timesteps == [99, 74, 49, 24], timesteps  # T = 100: round((i+1) 25) - 1
        unet = UNet2DModel.from_pretrained(folder / "unet")
        self.check_ddim("distilled_student", folder, unet, scheduler_config, steps=4)

    def check_own_run(self, conditional=False):
        """A run that `ddpm train` wrote (the DDPM layout, ddim sampling, uniform spacing, v
        prediction: the exported scheduler says v_prediction); `conditional`: on two class
        folders, exported with num_class_embeds 3 and the class names."""
        tag = "own_cond" if conditional else "own"
        images = self.workdir / f"{tag}_images"
        images.mkdir()
        rng = np.random.default_rng(1)
        for k in range(8):
            folder = images / ("cat" if k % 2 else "dog") if conditional else images
            folder.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(
                folder / f"image_{k}.png")
        config = {
            "data": {"image_size": 16, "channels": 1,
                     "labels": "folders" if conditional else "none"},
            "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                      "attention_resolutions": [8], "attention_heads": 2, "norm_groups": 8,
                      "dropout": 0.1},
            "diffusion": {"timesteps": 100, "schedule": "cosine", "prediction": "v"},
            "train": {"batch_size": 4, "steps": 2, "warmup_steps": 0, "sample_every": 0,
                      "checkpoint_every": 2, "device": "cpu"},
            "sample": {"sampler": "ddim", "steps": 10},
        }
        config_file = self.workdir / f"{tag}.json"
        write_json(config_file, config)
        run_dir = self.workdir / f"{tag}_run"
        self.ddpm_run("train", "--config", config_file, "--data", images, "--out", run_dir)
        self.check_export_round_trip(f"{tag}_run", run_dir)
        exported = json.loads((self.workdir / f"{tag}_run_exported" / "scheduler" /
                               "scheduler_config.json").read_text())
        assert exported["prediction_type"] == "v_prediction", exported["prediction_type"]
        if conditional:
            unet = json.loads((self.workdir / f"{tag}_run_exported" / "unet" /
                               "config.json").read_text())
            assert unet["num_class_embeds"] == 3, unet["num_class_embeds"]
            assert unet["_ddpm_class_names"] == ["cat", "dog"], unet["_ddpm_class_names"]
            again = torch.load(self.workdir / f"{tag}_run_reimported.pt", weights_only=True)
            config_again = json.loads(again["config"])
            assert config_again["data"]["classes"] == ["cat", "dog"], config_again["data"]
            assert config_again["model"]["num_classes"] == 2, config_again["model"]


def check_timesteps(check):
    """Our leading, trailing and linspace spacings against DDIMScheduler.set_timesteps, where
    values fall on halves and where numpy's float arithmetic is not exact."""
    tiny = ["--set", "data.image_size=8", "--set", "data.channels=1", "--set",
            "model.base_channels=8", "--set", "model.channel_mult=[1]", "--set",
            "model.attention_resolutions=[]", "--set", "model.norm_groups=4"]
    cases = [(1000, 50), (1000, 7), (999, 30), (1000, 16), (4000, 37), (10, 3)]
    notes = []
    for spacing in ("leading", "trailing", "linspace"):
        for timesteps, steps in cases:
            info = json.loads(check.ddpm_run(
                "info", "--json", *tiny, "--set", f"diffusion.timesteps={timesteps}", "--set",
                f"sample.steps={steps}", "--set", f"sample.spacing={spacing}"))
            ours = info["sampling"]["timesteps"]  # in the order the chain runs them
            scheduler = DDIMScheduler(num_train_timesteps=timesteps, timestep_spacing=spacing)
            scheduler.set_timesteps(steps)
            theirs = scheduler.timesteps.tolist()
            if len(theirs) == steps + 1 and theirs[-1] == -1:
                # np.arange's float length: one value too many, below timestep 0.
                notes.append(f"{spacing} T={timesteps} steps={steps}: diffusers adds timestep -1")
                theirs = theirs[:-1]
            assert ours == theirs, f"{spacing} T={timesteps} steps={steps}: {ours} != {theirs}"
    print(f"sampling timesteps: leading, trailing and linspace equal diffusers' in "
          f"{3 * len(cases)} cases" + "".join(f"; {note}" for note in notes))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddpm", required=True)
    parser.add_argument("--predictor", required=True, help="the predict_eps test tool")
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    check = Checker(args)
    work = args.workdir
    check_timesteps(check)

    cifar = random_unet(GOOGLE_CIFAR10_UNET, seed=1)
    flat_folder(work / "cifar10_flat", cifar, GOOGLE_CIFAR10_UNET, GOOGLE_SCHEDULER)
    flat_folder(work / "cifar10_bin", cifar, GOOGLE_CIFAR10_UNET, GOOGLE_SCHEDULER, weights="bin")
    flat_folder(work / "cifar10_legacy", cifar, GOOGLE_CIFAR10_UNET, GOOGLE_SCHEDULER,
                weights="bin", legacy=True)
    for name in ("cifar10_flat", "cifar10_bin", "cifar10_legacy"):
        check.check_eps(name, work / name, cifar)
    check.check_ddim("cifar10_flat", work / "cifar10_flat", cifar, GOOGLE_SCHEDULER, steps=10)
    check.check_export_round_trip("cifar10_flat", work / "cifar10_flat", cifar)
    # The same network read as a v- and as an x0-predictor: the scheduler's prediction_type
    # decides how its output becomes eps, in diffusers' DDIM loop and in ours.
    for prediction in ("v_prediction", "sample"):
        name = f"cifar10_{prediction}"
        scheduler = dict(GOOGLE_SCHEDULER, prediction_type=prediction)
        flat_folder(work / name, cifar, GOOGLE_CIFAR10_UNET, scheduler)
        text = check.ddpm_run("config", "--checkpoint", work / name)
        read = json.loads(text[text.index("{"):])["diffusion"]["prediction"]
        assert read == {"v_prediction": "v", "sample": "x0"}[prediction], read
        check.check_ddim(name, work / name, cifar, scheduler, steps=4, images=1)

    celeba = random_unet(CELEBAHQ_256_UNET, seed=2)
    celeba_scheduler = dict(GOOGLE_SCHEDULER, variance_type="fixed_small")
    flat_folder(work / "celebahq256_sharded", celeba, CELEBAHQ_256_UNET, celeba_scheduler,
                weights="sharded")
    shards = list((work / "celebahq256_sharded").glob("*.safetensors"))
    assert len(shards) > 1 and (work / "celebahq256_sharded" /
                                "diffusion_pytorch_model.safetensors.index.json").exists()
    check.check_eps("celebahq256_sharded", work / "celebahq256_sharded", celeba)
    flat_folder(work / "celebahq256_sharded_bin", celeba, CELEBAHQ_256_UNET, celeba_scheduler,
                weights="sharded_bin")
    assert (work / "celebahq256_sharded_bin" / "diffusion_pytorch_model.bin.index.json").exists()
    check.check_eps("celebahq256_sharded_bin", work / "celebahq256_sharded_bin", celeba)
    check.check_ddim("celebahq256_sharded", work / "celebahq256_sharded", celeba,
                     celeba_scheduler, steps=4, images=1)

    # train_unconditional.py: UNet2DModel(sample_size, in/out 3, layers_per_block 2, these
    # block_out_channels x 1/4, these block types) and DDPMScheduler(1000, "linear").
    unconditional = random_unet({
        "sample_size": 64, "in_channels": 3, "out_channels": 3, "layers_per_block": 2,
        "block_out_channels": [32, 32, 64, 64, 128, 128],
        "down_block_types": ["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4}, seed=3)
    pipeline_folder = work / "unconditional_pipeline"
    DDPMPipeline(unet=unconditional,
                 scheduler=DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                         prediction_type="epsilon")).save_pretrained(
        pipeline_folder)
    scheduler_config = json.loads((pipeline_folder / "scheduler" /
                                   "scheduler_config.json").read_text())
    check.check_eps("unconditional_pipeline", pipeline_folder, unconditional)
    check.check_ddim("unconditional_pipeline", pipeline_folder, unconditional, scheduler_config,
                     steps=5)
    check.check_export_round_trip("unconditional_pipeline", pipeline_folder, unconditional)
    check.check_init_from(pipeline_folder, unconditional)

    # An improved-DDPM model: out_channels twice in_channels (the variance output) with
    # DDPMScheduler(variance_type="learned_range"), saved by DDPMPipeline.
    learned = random_unet({
        "sample_size": 16, "in_channels": 1, "out_channels": 2, "layers_per_block": 1,
        "block_out_channels": [16, 32], "norm_num_groups": 8,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}, seed=5)
    learned_folder = work / "learned_variance_pipeline"
    DDPMPipeline(unet=learned, scheduler=DDPMScheduler(num_train_timesteps=1000,
                                                       variance_type="learned_range")
                 ).save_pretrained(learned_folder)
    learned_scheduler = json.loads((learned_folder / "scheduler" /
                                    "scheduler_config.json").read_text())
    check.check_eps("learned_variance_pipeline", learned_folder, learned)
    check.check_ddpm_learned("learned_variance_pipeline", learned_folder, learned,
                             learned_scheduler, steps=20)
    check.check_export_round_trip("learned_variance_pipeline", learned_folder, learned)

    # A class-conditional UNet2DModel (num_class_embeds, class_labels), of diffusers' making.
    conditional = random_unet({
        "sample_size": 16, "in_channels": 1, "out_channels": 1, "layers_per_block": 1,
        "block_out_channels": [16, 32], "norm_num_groups": 8, "num_class_embeds": 5,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}, seed=4)
    conditional_folder = work / "conditional_pipeline"
    DDPMPipeline(unet=conditional, scheduler=DDPMScheduler(num_train_timesteps=1000)
                 ).save_pretrained(conditional_folder)
    check.check_export_round_trip("conditional_pipeline", conditional_folder, conditional)
    check.check_own_run()
    check.check_distilled_student()
    check.check_own_run(conditional=True)
    print("Hugging Face interop: every check passed")


if __name__ == "__main__":
    main()
