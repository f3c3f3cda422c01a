#!/usr/bin/env bash
# Downloads the wheels an offline image build installs into docker/wheels/VARIANT (see
# docker/wheels/README.md):
#   scripts/docker_wheels.sh cpu|cuda
# The versions are the Dockerfile's build arguments' defaults (read from it, so the two cannot
# disagree). Uses the first python3 with pip, or DDPM_PYTHON; needs PyPI (or a mirror pip is
# configured for) only here, never in the build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
variant="${1:-}"
[[ "$variant" == cpu || "$variant" == cuda ]] || { echo "usage: $0 cpu|cuda" >&2; exit 2; }
python="${DDPM_PYTHON:-python3}"
default() {  # the default of ARG $1 in the Dockerfile (continued lines joined)
  sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$root/Dockerfile" | sed -n "s/^ARG $1=//p" | head -1 |
    tr -d '"'
}
packages=("$(default CMAKE_VERSION)" "$(default NINJA_VERSION)")
if [[ "$variant" == cpu ]]; then
  packages+=("$(default TORCH_CPU)")
else
  packages+=("$(default TORCH_CUDA)")
  read -r -a cuda <<< "$(default CUDA_WHEELS)"
  packages+=("${cuda[@]}")
fi
for package in "${packages[@]}"; do
  [[ -n "$package" ]] ||
    { echo "docker_wheels: a version is missing from the Dockerfile" >&2; exit 1; }
done
folder="$root/docker/wheels/$variant"
mkdir -p "$folder"
echo "==> downloading ${packages[*]} into docker/wheels/$variant" >&2
# Wheels for the image's platform (Debian 12: CPython 3.11, glibc 2.36, x86_64) whatever the host.
platforms=(--platform any --platform manylinux1_x86_64 --platform manylinux2010_x86_64
           --platform manylinux2014_x86_64)
for minor in $(seq 5 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
"$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --python-version 3.11 --implementation cp "${platforms[@]}" \
  -d "$folder" "${packages[@]}"
echo "==> $(ls "$folder"/*.whl | wc -l) wheels, $(du -sh "$folder" | cut -f1)" >&2
