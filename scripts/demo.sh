#!/usr/bin/env bash
# The main job, from a clean clone: installs and builds what is missing (scripts/setup.sh), then
# shows what the project does today: the paper's networks and schedules, sized and counted.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
ddpm="${DDPM_BUILD_DIR:-$root/build}/ddpm"

for config in cifar10 celebahq256 fashion_mnist tiny; do
  printf '\n=== configs/%s.json\n' "$config"
  "$ddpm" info --config "$root/configs/$config.json"
done
printf '\n=== the same CIFAR-10 network with the cosine schedule (an override)\n'
"$ddpm" info --config "$root/configs/cifar10.json" --set diffusion.schedule=cosine | tail -n 7
