#!/usr/bin/env bash
# Records what a ddpm binary does, so that a refactor can prove it changed nothing:
# samples from the shipped model with every sampler (fixed seeds, several batch sizes, an x_T
# input, a trajectory), a class-conditional sample with guidance when a checkpoint is given, and
# the weights after a few training steps (plain, with EMA, grad accumulation and min-SNR).
# Compare two snapshots with dev/behaviour_compare.py.
#   dev/behaviour_snapshot.sh BINARY OUT_DIR [CLASS_CONDITIONAL_CHECKPOINT]
set -euo pipefail
bin=$(realpath "$1"); out=$2; cond=${3:-}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
model=data/models/fashion_mnist_cpu.pt
data=$out/train_images
rm -rf "$data"
for c in 0 1 2 3 4 5 6 7 8 9; do   # 20 images of each class, the first by name
  mkdir -p "$data/$c"
  mapfile -t files < <(ls data/fashion-mnist/train/$c | sort)
  for f in "${files[@]:0:20}"; do cp "data/fashion-mnist/train/$c/$f" "$data/$c/"; done
done
mkdir -p "$out"
for s in ddpm ddim euler euler_ancestral heun dpmpp_2m dpmpp_2m_sde; do
  "$bin" sample --checkpoint "$model" --out "$out/sample_$s" --num 6 --batch 4 --sampler "$s" \
    --steps 8 --seed 11 --threads 1 --overwrite >"$out/sample_$s.log" 2>&1
done
"$bin" sample --checkpoint "$model" --out "$out/sample_ddim_eta" --num 3 --sampler ddim --eta 0.5 \
  --steps 12 --spacing trailing --seed 5 --threads 1 --trajectory 4 --grid "$out/ddim_eta_grid.png" \
  --overwrite >"$out/sample_ddim_eta.log" 2>&1
if [[ -n "$cond" ]]; then
  "$bin" sample --checkpoint "$cond" --out "$out/sample_cond" --num 4 --class 9 --class 0 \
    --guidance 2 --steps 10 --seed 2 --threads 1 --overwrite >"$out/sample_cond.log" 2>&1
fi
rm -rf "$out/train"
"$bin" train --config configs/tiny.json --data "$data" --out "$out/train" --threads 1 \
  --set train.steps=12 --set train.checkpoint_every=6 --set train.sample_every=12 \
  --set train.log_every=4 --set train.grad_accumulation=2 \
  --set train.eval_every=12 --set train.eval_samples=8 --set train.eval_real="$data" >"$out/train.log" 2>&1
