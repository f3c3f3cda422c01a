#!/usr/bin/env bash
# Measures `ddpm bench` against the same network in diffusers (scripts/bench_diffusers.py,
# eager and torch.compile) in one invocation, with the same torch version, threads, batch and
# precision, and prints each figure with its ratio to the peer.
#
#   scripts/bench_compare.sh CONFIG [OUT_DIR]
#
# Environment (defaults in brackets): TRAIN_BATCH [16], TRAIN_STEPS [60], SAMPLE_BATCH [64],
# DDIM_STEPS [20] (the DDIM chain, timed whole), DDPM_STEPS [20] (reverse steps timed of the
# T-step DDPM chain, extrapolated to T), THREADS [all cores], PRECISION [fp32], DEVICE [cpu],
# COMPILE [1]: also the torch.compile peer.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="${1:?usage: scripts/bench_compare.sh CONFIG [OUT_DIR]}"
out="${2:-$root/build/bench}"
mkdir -p "$out"
ddpm="${DDPM_BUILD_DIR:-$root/build}/ddpm"
python="$root/.venv/bin/python"
threads="${THREADS:-$(nproc)}"
common=(--config "$config" --threads "$threads" --precision "${PRECISION:-fp32}"
        --device "${DEVICE:-cpu}")
train_args=(--mode train --batch "${TRAIN_BATCH:-16}" --steps "${TRAIN_STEPS:-60}" --warmup 5)
ddim_args=(--mode sample --sampler ddim --batch "${SAMPLE_BATCH:-64}")
ddpm_args=(--mode sample --sampler ddpm --batch "${SAMPLE_BATCH:-64}")
peers=(eager)
[[ "${COMPILE:-1}" == 1 ]] && peers+=(compiled)

peer() {  # peer NAME JSON ARGS...
  local name="$1" json="$2"
  shift 2
  local flags=()
  [[ "$name" == compiled ]] && flags=(--compile --warmup 3)
  "$python" "$root/scripts/bench_diffusers.py" "${common[@]}" "$@" "${flags[@]}" --json "$json" \
    >/dev/null
}

echo "==> training" >&2
"$ddpm" bench "${common[@]}" "${train_args[@]}" --json "$out/ours_train.json" >/dev/null
for p in "${peers[@]}"; do peer "$p" "$out/${p}_train.json" "${train_args[@]}"; done
echo "==> sampling, DDIM-${DDIM_STEPS:-20}" >&2
"$ddpm" bench "${common[@]}" "${ddim_args[@]}" --chain-steps "${DDIM_STEPS:-20}" \
  --steps "${DDIM_STEPS:-20}" --warmup 2 --json "$out/ours_ddim.json" >/dev/null
for p in "${peers[@]}"; do
  peer "$p" "$out/${p}_ddim.json" "${ddim_args[@]}" --sample-steps "${DDIM_STEPS:-20}"
done
echo "==> sampling, DDPM (${DDPM_STEPS:-20} steps timed, extrapolated to T)" >&2
"$ddpm" bench "${common[@]}" "${ddpm_args[@]}" --steps "${DDPM_STEPS:-20}" --warmup 2 \
  --json "$out/ours_ddpm.json" >/dev/null
for p in "${peers[@]}"; do
  peer "$p" "$out/${p}_ddpm.json" "${ddpm_args[@]}" --sample-steps "${DDPM_STEPS:-20}"
done

"$python" - "$out" "${peers[@]}" <<'PY'
import json, pathlib, sys
out, peers = pathlib.Path(sys.argv[1]), sys.argv[2:]
rows = [("train", "train_images_per_s"), ("ddim", "sample_images_per_s"),
        ("ddpm", "sample_images_per_s")]
print(f"{'figure':<10} {'ddpm':>10} " + " ".join(f"{p:>10} {'ratio':>6}" for p in peers)
      + f" {'ddpm MiB':>9} " + " ".join(f"{p + ' MiB':>13}" for p in peers))
for name, key in rows:
    ours = json.loads((out / f"ours_{name}.json").read_text())
    line = f"{name:<10} {ours[key]:>10.2f} "
    memory = f" {ours['peak_memory_bytes'] / 2**20:>9.0f} "
    for p in peers:
        theirs = json.loads((out / f"{p}_{name}.json").read_text())
        line += f"{theirs[key]:>10.2f} {ours[key] / theirs[key]:>6.2f} "
        memory += f"{theirs['peak_memory_bytes'] / 2**20:>13.0f} "
    print(line + memory)
PY
