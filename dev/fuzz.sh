#!/usr/bin/env bash
# Fuzzes the parsers of outside bytes with libFuzzer (Debian's clang), AddressSanitizer and
# UBSan: builds the fuzz preset (build-fuzz/, targets in tests/fuzz/) and runs each target for a
# fixed time, one after the other.
#
#   dev/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 120 seconds, every target
#
# Targets (tests/fuzz/fuzz_targets.h): image config checkpoint feature_stats checkpoint_pointer
# safetensors_header safetensors_reader diffusers_config.
# Seeds: tests/data/fuzz/TARGET/ and the folders fuzz_targets.cpp adds (the two lists agree).
# Each target works in build-fuzz/fuzz/TARGET/: corpus/ (what it found worth keeping), log.txt
# (with libFuzzer's final stats) and any crash-*, leak-*, oom-*, timeout-* or slow-unit-*. Once
# the bug is fixed, copy the input into tests/data/fuzz/TARGET/: the unit test FuzzRegressions
# runs every file there through the same entry, in every build. Prints one summary line per
# target; exits 1 when any target found something.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-120}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(image config checkpoint feature_stats checkpoint_pointer safetensors_header
           safetensors_reader diffusers_config)
fi
export PATH="$root/.venv/bin:$PATH"  # cmake and ninja of scripts/setup.sh
if ! command -v clang++ >/dev/null 2>&1; then
  sudo=""
  [[ "$(id -u)" != 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang libclang-rt-14-dev >/dev/null
fi
if [[ ! -f "$root/build-fuzz/CMakeCache.txt" ]]; then
  (cd "$root" && cmake --preset fuzz >/dev/null)
fi
cmake --build "$root/build-fuzz" -j "${DDPM_FUZZ_JOBS:-2}" \
  --target "${targets[@]/#/fuzz_}" >/dev/null

# Seed folders and dictionary of a target.
seeds_of() {
  case "$1" in
    config) echo "$root/tests/data/fuzz/config $root/configs" ;;
    safetensors_*) echo "$root/tests/data/safetensors" ;;
    *) echo "$root/tests/data/fuzz/$1" ;;
  esac
}
dictionary_of() {
  case "$1" in
    image) echo "$root/tests/fuzz/image.dict" ;;
    config) echo "$root/tests/fuzz/config.dict" ;;
    checkpoint | feature_stats) echo "$root/tests/fuzz/pickle.dict" ;;
    safetensors_*) echo "$root/tests/fuzz/safetensors.dict" ;;
    diffusers_config) echo "$root/tests/fuzz/diffusers_config.dict" ;;
  esac
}

found=0
summary=()
for target in "${targets[@]}"; do
  work="$root/build-fuzz/fuzz/$target"
  mkdir -p "$work/corpus"
  options=(-max_total_time="$seconds" -print_final_stats=1 -timeout=30
           -rss_limit_mb=4096 -artifact_prefix="$work/")
  dictionary="$(dictionary_of "$target")"
  [[ -n "$dictionary" ]] && options+=(-dict="$dictionary")
  # shellcheck disable=SC2046  # the seed folders are one word each
  status=0
  started="$(date +%s)"
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$root/build-fuzz/tests/fuzz/fuzz_$target" "${options[@]}" "$work/corpus" \
    $(seeds_of "$target") >"$work/log.txt" 2>&1 || status=$?
  elapsed="$(($(date +%s) - started))"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log.txt" | tail -1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log.txt" | tail -1)"
  corpus="$(find "$work/corpus" -type f | wc -l)"
  findings="$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o \
    -name 'oom-*' -o -name 'timeout-*' -o -name 'slow-unit-*' \) | wc -l)"
  if [[ "$status" != 0 || "$findings" != 0 ]]; then found=1; fi
  summary+=("$(printf '%-20s %6ss %12s runs %8s exec/s %6s corpus %3s findings  exit %s' \
    "$target" "$elapsed" "${runs:-?}" "${speed:-?}" "$corpus" "$findings" "$status")")
done
printf '%s\n' "${summary[@]}"
[[ "$found" == 0 ]] || echo "see build-fuzz/fuzz/TARGET/log.txt and the inputs next to it" >&2
exit "$found"
