#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian/Ubuntu machine, then builds it. Idempotent:
# run it as often as you like; it installs only what is missing and rebuilds only what changed.
#
#   scripts/setup.sh          system packages, .venv with torch (LibTorch), build/ with ddpm
#   scripts/setup.sh --test   also the Python packages the test suite compares against,
#                             matplotlib for scripts/plot_metrics.py, and Debian's Fashion-MNIST
#                             (the evaluation's mirror test trains the feature network on it)
#   scripts/setup.sh --data   also Debian's Fashion-MNIST (the demo's default data)
#
# Environment: DDPM_TORCH picks the torch to build against (default: torch==2.14.1, a CUDA
# build, when nvcc is installed, else torch==2.13.0); DDPM_BUILD_DIR (default: build).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
build_dir="${DDPM_BUILD_DIR:-$root/build}"
with_tests=0
with_data=0
for argument in "$@"; do
  case "$argument" in
    --test) with_tests=1 ;;
    --data) with_data=1 ;;
    *) echo "usage: scripts/setup.sh [--test] [--data]" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

# 0. Disk space, checked first so that a full disk stops us here with a clear message instead of
# halfway through an install or a build. Measured here: the venv with a CUDA torch 5.7 GB, a
# build 1.5 GB (one precompiled header is 0.7 GB), the test suite's outputs 1.5 GB.
need_gb=1
"$venv/bin/python" -c 'import torch' 2>/dev/null || need_gb=$((need_gb + 6))
[[ -f "$build_dir/build.ninja" ]] || need_gb=$((need_gb + 2))
((with_tests)) && need_gb=$((need_gb + 2))
mkdir -p "$build_dir"
free_kb="$(df -Pk "$build_dir" | awk 'NR == 2 { print $4 }')"
if [[ -n "$free_kb" ]] && ((free_kb < need_gb * 1024 * 1024)); then
  echo "error: $(df -Ph "$build_dir" | awk 'NR == 2 { print $6 }') has $((free_kb / 1024)) MB" \
       "free; setting up and building here needs about $need_gb GB (the venv with torch, the" \
       "build in $build_dir, the tests' outputs). Free space there, or point DDPM_BUILD_DIR at" \
       "another disk, then run this again." >&2
  exit 1
fi

# 1. System packages: compilers, the C++ libraries, Python's venv.
packages=(g++ git pkg-config libcxxopts-dev nlohmann-json3-dev libspdlog-dev libstb-dev libgloo-dev
          libgtest-dev libwebp-dev libtiff-dev)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv python3-pip)
((with_data || with_tests)) && packages+=(dataset-fashion-mnist)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing system packages: ${missing[*]}"
  sudo=""
  [[ "$(id -u)" != 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. A virtual environment with torch (its LibTorch is what we link), CMake and Ninja.
if [[ -z "${DDPM_TORCH:-}" ]]; then
  if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then
    DDPM_TORCH="torch==2.14.1"
  else
    DDPM_TORCH="torch==2.13.0"
  fi
fi
if [[ ! -x "$venv/bin/python" ]]; then
  say "creating $venv"
  python3 -m venv "$venv"
fi
pip_install() {
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
wanted_version="${DDPM_TORCH#torch==}"
installed_version="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' \
  2>/dev/null || true)"
if [[ "$installed_version" != "$wanted_version" ]]; then
  say "installing $DDPM_TORCH into $venv (a CUDA build is several GB; this takes minutes)"
  pip_install "$DDPM_TORCH"
fi
"$venv/bin/python" -c 'import cmake, ninja' 2>/dev/null || pip_install cmake ninja
if ((with_tests)); then
  "$venv/bin/python" -c 'import diffusers, numpy, matplotlib, tensorboard' 2>/dev/null || {
    say "installing diffusers (the Python reference the tests compare against), matplotlib and"\
        "tensorboard (whose loader reads our event files in the tests)"
    pip_install diffusers numpy matplotlib tensorboard
  }
fi

# 3. Configure and build.
export PATH="$venv/bin:$PATH"
if [[ ! -f "$build_dir/build.ninja" ]]; then
  say "configuring $build_dir"
  mkdir -p "$build_dir"
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DDDPM_PYTHON="$venv/bin/python" >"$build_dir/configure.log" 2>&1 || {
    cat "$build_dir/configure.log" >&2
    exit 1
  }
fi
say "building (first build: several minutes on 2 cores)"
cmake --build "$build_dir" --parallel "$(nproc)"
say "ready: $build_dir/ddpm"
