#!/usr/bin/env python3
"""Tests dev/bench_compare.py end to end on a tiny workload (the tiny config, batch 2, two
steps, two interleaved rounds, no torch.compile, one thread: well under a minute).

The figures themselves are noise at this size; what is checked is the bookkeeping: every figure
and process is present, the rates are positive, each per-round ratio is ours/peer of the rates
recorded for that round, the medians are the medians of those lists (and of each process's own
JSON), and the order of the processes rotates from round to round. Two failure paths are checked
too: a missing config (exit 2, naming the file) and a benchmark process that dies before it is
ready (exit 1, its command and stderr reported, no summary, no hang). And an A/B of one of our
own settings (--variant, --no-diffusers).
"""
import argparse
import json
import math
import pathlib
import statistics
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "dev" / "bench_compare.py"
CONFIG = ROOT / "configs" / "tiny.json"
FIGURES = ("train", "ddim", "ddpm")
PROCESSES = ("ours", "eager")  # --no-compile
ROUNDS = 2
TINY = ["--no-compile", "--rounds", str(ROUNDS), "--threads", "1", "--train-batch", "2",
        "--train-steps", "2", "--sample-batch", "2", "--ddim-steps", "2", "--ddpm-steps", "2"]


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9)


def bench_compare(*arguments, timeout):
    command = [sys.executable, str(SCRIPT), *arguments, "--python", sys.executable]
    print("$", " ".join(command), flush=True)
    run = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=timeout)
    print(run.stdout + run.stderr, flush=True)
    return run


def check_missing_config(ddpm, workdir):
    missing = workdir / "no_such_config.json"
    run = bench_compare(str(missing), "--ddpm", ddpm, "--out", str(workdir / "out"), *TINY,
                        timeout=60)
    assert run.returncode == 2, f"a missing config: exit code {run.returncode}, expected 2"
    assert str(missing) in run.stderr, "the error does not name the missing config"


def check_failing_process(workdir):
    # A stand-in for our binary that fails at once: the peer must be stopped, the failure
    # reported with the stand-in's stderr, and no summary written.
    failing = workdir / "failing_ddpm.sh"
    failing.write_text("#!/bin/sh\necho 'failing_ddpm: simulated failure' >&2\nexit 3\n")
    failing.chmod(0o755)
    out = workdir / "failing"
    run = bench_compare(str(CONFIG), "--ddpm", str(failing), "--out", str(out), "--figures", "train",
                        *TINY, timeout=120)
    assert run.returncode == 1, f"a failing process: exit code {run.returncode}, expected 1"
    for expected in ("failing_ddpm: simulated failure", "exited with code 3", str(failing)):
        assert expected in run.stderr, f"the failure report lacks {expected!r}"
    assert not (out / "summary.json").exists(), "a failed run left a summary.json"


def check_variant(ddpm, workdir):
    # An A/B of one of our settings, without diffusers: the variant runs as its own process with
    # the extra arguments, and its ratio is computed like a peer's.
    out = workdir / "variant"
    run = bench_compare(str(CONFIG), "--ddpm", ddpm, "--out", str(out), "--figures", "train",
                        "--no-diffusers", "--variant", "contiguous=--memory-format contiguous",
                        *TINY, timeout=120)
    assert run.returncode == 0, f"a --variant run failed with exit code {run.returncode}"
    figure = json.loads((out / "summary.json").read_text())["figures"]["train"]
    assert list(figure["processes"]) == ["ours", "contiguous"], list(figure["processes"])
    assert json.loads((out / "contiguous_train.json").read_text())["memory_format"] == "contiguous"
    expected = [o / c for o, c in zip(figure["processes"]["ours"]["rounds"],
                                      figure["processes"]["contiguous"]["rounds"])]
    assert all(close(a, b) for a, b in zip(figure["ratios"]["contiguous"]["rounds"], expected))


def check_summary(out):
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == ROUNDS
    assert sorted(summary["figures"]) == sorted(FIGURES), f"figures: {list(summary['figures'])}"
    for name, figure in summary["figures"].items():
        processes = figure["processes"]
        assert list(processes) == list(PROCESSES), f"{name}: processes {list(processes)}"
        for process, record in processes.items():
            rates = record["rounds"]
            assert len(rates) == ROUNDS, f"{name}/{process}: {len(rates)} rounds"
            assert all(math.isfinite(r) and r > 0 for r in rates), f"{name}/{process}: {rates}"
            assert close(record["median_images_per_s"], statistics.median(rates))
            assert record["peak_memory_bytes"] > 0, f"{name}/{process}: no peak memory"
            own = json.loads((out / f"{process}_{name}.json").read_text())
            assert close(own[figure["rate_key"]], record["median_images_per_s"]), \
                f"{name}/{process}: its JSON's figure is not the median of the summary's rounds"
        ratio = figure["ratios"]["eager"]
        expected = [o / e for o, e in zip(processes["ours"]["rounds"],
                                          processes["eager"]["rounds"])]
        assert len(ratio["rounds"]) == ROUNDS
        assert all(close(a, b) for a, b in zip(ratio["rounds"], expected)), \
            f"{name}: ratios {ratio['rounds']}, recomputed {expected}"
        assert close(ratio["median"], statistics.median(expected))
        assert close(ratio["min"], min(expected)) and close(ratio["max"], max(expected))
        first = [PROCESSES[r % len(PROCESSES)] for r in range(ROUNDS)]
        assert [order[0] for order in figure["go_order"]] == first, \
            f"{name}: the first process does not rotate: {figure['go_order']}"
    print(f"bench_compare summary: {len(FIGURES)} figures, {ROUNDS} rounds each, consistent")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ddpm", required=True, help="path to the ddpm binary")
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    check_missing_config(args.ddpm, args.workdir)
    check_failing_process(args.workdir)
    check_variant(args.ddpm, args.workdir)
    out = args.workdir / "out"
    run = bench_compare(str(CONFIG), "--ddpm", args.ddpm, "--out", str(out), *TINY, timeout=300)
    assert run.returncode == 0, f"bench_compare.py failed with exit code {run.returncode}"
    check_summary(out)


if __name__ == "__main__":
    main()
