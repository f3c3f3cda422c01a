#!/usr/bin/env bash
# Fuzzes the safetensors reader with libFuzzer (Debian's clang), two targets in turn:
#   header  the header checks alone (plain C++), with AddressSanitizer and UBSan;
#   reader  read_safetensors() whole, tensors into LibTorch (.venv's torch), with AddressSanitizer.
#
#   scripts/fuzz_safetensors.sh [SECONDS_PER_TARGET] [header|reader|both]   default 300 both
#
# Seeds: tests/data/safetensors/ (files written by the reference Python library). A crashing
# input is written to build-fuzz/crash-*; once fixed, copy it into tests/data/safetensors/, where
# the unit tests keep running it (Safetensors.FuzzRegressions). Installs clang when missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-300}"
targets="${2:-both}"
out="$root/build-fuzz"
if ! command -v clang++ >/dev/null 2>&1; then
  sudo=""
  [[ "$(id -u)" != 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang >/dev/null
fi
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -I"$root/include")
common_sources=("$root/src/safetensors_header.cpp" "$root/src/error.cpp")

run_target() {  # NAME, then the fuzzer's extra options
  local name="$1"
  shift
  mkdir -p "$out/corpus_$name"
  # -rss_limit_mb: a file that made the reader allocate by a size it states would stop here.
  (cd "$out" && "./fuzz_safetensors_$name" -max_total_time="$seconds" -max_len=4096 \
    -dict="$root/tests/fuzz/safetensors.dict" -print_final_stats=1 "$@" \
    "corpus_$name" "$root/tests/data/safetensors")
}

if [[ "$targets" == header || "$targets" == both ]]; then
  clang++ "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "$root/tests/fuzz/fuzz_safetensors_header.cpp" "${common_sources[@]}" \
    -o "$out/fuzz_safetensors_header"
  run_target header -rss_limit_mb=512
fi
if [[ "$targets" == reader || "$targets" == both ]]; then
  torch_dir="$("$root/.venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
  clang++ "${flags[@]}" -fsanitize=fuzzer,address -isystem "$torch_dir/include" \
    -isystem "$torch_dir/include/torch/csrc/api/include" \
    "$root/tests/fuzz/fuzz_safetensors_reader.cpp" "$root/src/safetensors.cpp" \
    "$root/src/atomic_file.cpp" "${common_sources[@]}" \
    -L"$torch_dir/lib" -ltorch -ltorch_cpu -lc10 -Wl,-rpath,"$torch_dir/lib" \
    -o "$out/fuzz_safetensors_reader"
  run_target reader -rss_limit_mb=2048
fi
