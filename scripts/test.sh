#!/usr/bin/env bash
# Runs the whole test suite from a clean clone: installs and builds what is missing
# (scripts/setup.sh --test), then runs every test through CTest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh" --test
build_dir="${DDPM_BUILD_DIR:-$root/build}"
export PATH="$root/.venv/bin:$PATH"
ctest --test-dir "$build_dir" --output-on-failure --parallel "$(nproc)" "$@"
