#!/usr/bin/env python3
"""The README's evaluation commands work in a fresh clone right after the set-up (issue: `ddpm
eval` stopped because the default feature network did not exist, and the README's way to make
it ran torch's scripts with a Python that has no torch).

In a fresh folder laid out as a clone after `scripts/setup.sh` and the demo's data step (the
build, the repository's tracked files, `data/fashion-mnist` made by the demo's own command),
runs every `build/ddpm sample --checkpoint data/models/...` and `build/ddpm eval` line of the
README's shell blocks verbatim, and asserts:
  - the shipped model and the default feature network are tracked by git, so a clone has them;
  - each command exits 0; eval prints every figure, on the default feature network (its
    identifier) and the real and generated counts the commands imply, and an FID of the
    shipped model's 64 samples below 30 (its 2,000-sample FID is about 1; 64 samples of a
    broken model score above 100);
  - no line of the README or docs/ runs a script that needs torch with a bare `python3` (the
    system's Python has no torch; the set-up's is .venv/bin/python).
"""
import argparse
import ast
import math
import os
import pathlib
import re
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED = ["data/models/fashion_mnist_cpu.pt", "data/feature-nets/fashion_mnist.pt"]
FIGURES = ["fid", "kid_mean", "kid_std", "precision", "recall", "num_real", "num_generated",
           "feature_net", "features_file"]


def shell_lines(markdown):
    """The lines of a markdown file's ```sh blocks, with backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh" if not inside else False
            continue
        if not inside:
            continue
        line = pending + line.split("  #")[0].strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line:
            lines.append(line)
    return lines


def imports_torch(script, seen=None):
    """Whether a script imports torch, directly or through a module beside it."""
    seen = seen or set()
    if script in seen or not script.exists():
        return False
    seen.add(script)
    for node in ast.walk(ast.parse(script.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in ("torch", "diffusers", "torchvision"):
                return True
            if imports_torch(script.parent / (top + ".py"), seen):
                return True
    return False


def parse_figures(output):
    figures = {}
    for line in output.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and re.fullmatch(r"[a-z_]+", parts[0]):
            figures[parts[0]] = parts[1].strip().strip('"')
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ddpm", required=True, type=pathlib.Path)
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    failures = []

    def check(condition, message):
        print(("ok   " if condition else "FAIL ") + message, flush=True)
        if not condition:
            failures.append(message)

    # What a clone holds.
    if (ROOT / ".git").exists():
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--", *SHIPPED],
                                 capture_output=True, text=True, check=True).stdout.split()
        for path in SHIPPED:
            check(path in tracked, f"{path} is tracked by git, so a fresh clone has it")
    else:
        print("note: not a git checkout; skipping the tracked-file check")

    # A fresh folder: the clone's files (linked), the set-up's build, the demo's data step.
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("samples", "grid.png", "eval.json", "train.stats"):
        target = work / stale
        if target.is_dir():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        elif target.exists():
            target.unlink()
    links = {"build": args.ddpm.resolve().parent, "data/models": ROOT / "data/models",
             "data/feature-nets": ROOT / "data/feature-nets", "scripts": ROOT / "scripts",
             "configs": ROOT / "configs"}
    for name, source in links.items():
        link = work / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(source)
    demo = (ROOT / "scripts/demo.sh").read_text()
    check("scripts/prepare_fashion_mnist.py\" --output \"$root/data/fashion-mnist\"" in demo,
          "the demo prepares data/fashion-mnist with scripts/prepare_fashion_mnist.py")
    subprocess.run(["python3", "scripts/prepare_fashion_mnist.py", "--output",
                    "data/fashion-mnist"], cwd=work, check=True)

    readme = shell_lines((ROOT / "README.md").read_text())
    commands = [line for line in readme
                if line.startswith("build/ddpm sample --checkpoint data/models/")
                or line.startswith("build/ddpm eval ")]
    check(any(c.startswith("build/ddpm eval ") for c in commands),
          "the README shows a ddpm eval command")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    for command in commands:
        print("+", command, flush=True)
        result = subprocess.run(shlex.split(command) + ["--threads", "2"], cwd=work, env=env,
                                capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr[-3000:])
        check(result.returncode == 0, f"exit status 0: {command}")
        if not command.startswith("build/ddpm eval ") or result.returncode != 0:
            continue
        figures = parse_figures(result.stdout)
        check(all(name in figures for name in FIGURES), "eval prints " + ", ".join(FIGURES))
        check(figures.get("features_file") == "data/feature-nets/fashion_mnist.pt",
              "eval uses the default feature network data/feature-nets/fashion_mnist.pt")
        generated = len(list((work / "samples").glob("*.png")))
        check(figures.get("num_generated") == str(generated) and generated > 0,
              f"eval counts the {generated} samples the README's sample command wrote")
        if "data/fashion-mnist/test" in command:
            check(figures.get("num_real") == "10000", "eval reads the 10,000 test images")
        fid = float(figures.get("fid", "nan"))
        check(math.isfinite(fid) and 0 < fid < 30,
              f"FID of the shipped model's samples {fid:.2f} is in (0, 30)")

    # Scripts named with a bare python3 must not need torch.
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for match in re.finditer(r"(?<![/\w.])python3 (scripts|dev)/(\w+\.py)", page.read_text()):
            script = ROOT / match.group(1) / match.group(2)
            check(not imports_torch(script),
                  f"{page.relative_to(ROOT)}: `python3 {match.group(1)}/{match.group(2)}` needs "
                  "no torch" + ("" if not imports_torch(script) else
                                " (it does: name .venv/bin/python)"))

    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
