"""Writes tests/data/repaint_timesteps.json: diffusers' RePaintScheduler.set_timesteps lists for a
few (T, steps, jump_length, jump_n_sample), the reference test_editing.cpp checks ours against.

    .venv/bin/python dev/repaint_reference.py
"""
import json
import pathlib

import diffusers
from diffusers import RePaintScheduler

CASES = [(1000, 250, 10, 10), (1000, 50, 5, 3), (20, 10, 3, 2), (100, 100, 10, 10),
         (1000, 7, 10, 10), (10, 20, 4, 1)]


def main():
    out = {"diffusers_version": diffusers.__version__, "cases": []}
    for timesteps, steps, jump_length, jump_n_sample in CASES:
        scheduler = RePaintScheduler(num_train_timesteps=timesteps)
        scheduler.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample)
        out["cases"].append({"timesteps_total": timesteps, "steps": steps,
                             "jump_length": jump_length, "jump_n_sample": jump_n_sample,
                             "timesteps": [int(t) for t in scheduler.timesteps]})
    path = pathlib.Path(__file__).resolve().parent.parent / "tests/data/repaint_timesteps.json"
    path.write_text(json.dumps(out) + "\n")
    print(f"wrote {path} (diffusers {diffusers.__version__})")


if __name__ == "__main__":
    main()
