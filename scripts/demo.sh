#!/usr/bin/env bash
# The main job, from a clean clone: installs and builds what is missing (scripts/setup.sh),
# turns Debian's Fashion-MNIST into PNG folders, trains the tiny config on it for a few minutes
# on the CPU (or a GPU when there is one), and samples a grid from the trained model.
#
#   DEMO_STEPS   training steps (default 1500: minutes on a 2-core CPU)
#   DEMO_CONFIG  config to train (default configs/tiny.json; configs/fashion_mnist_cond.json is
#                class-conditional, one grid row per class; configs/fashion_mnist.json is the
#                full-quality GPU setting)
# Run it again to continue: the run resumes from its latest checkpoint.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --data
ddpm="${DDPM_BUILD_DIR:-$root/build}/ddpm"
config="${DEMO_CONFIG:-$root/configs/tiny.json}"
steps="${DEMO_STEPS:-1500}"
run_dir="$root/runs/demo-$(basename "$config" .json)"

python3 "$root/scripts/prepare_fashion_mnist.py" --output "$root/data/fashion-mnist"

resume=()
[[ -f "$run_dir/checkpoints/latest" ]] && resume=(--resume)
"$ddpm" train --config "$config" --data "$root/data/fashion-mnist/train" --out "$run_dir" \
  --set train.steps="$steps" --set train.sample_every=500 "${resume[@]}"

"$ddpm" sample --checkpoint "$run_dir" --out "$run_dir/final" --num 64 --batch 64 \
  --grid "$run_dir/grid.png" --overwrite
printf '\nSamples: %s\nGrid:    %s\nTraining grids: %s\n' "$run_dir/final" \
  "$run_dir/grid.png" "$run_dir/samples"
printf 'Score them: %s eval --real %s --generated %s\nWatch training: %s\n' "$ddpm" \
  "$root/data/fashion-mnist/test" "$run_dir/final" \
  "$root/.venv/bin/tensorboard --logdir $root/runs (after pip install tensorboard in .venv)"
