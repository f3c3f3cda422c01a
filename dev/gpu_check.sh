#!/usr/bin/env bash
# Builds, tests, trains and benchmarks on a GPU machine where nothing can be installed (the
# machine the device tool lends), in as few calls as possible.
#
# Here, on a machine set up by scripts/setup.sh --test --data:
#   dev/gpu_check.sh prepare
#     fills .carry/ (ignored by git, about 40 MB): the header-only dependencies, GoogleTest's
#     sources and Gloo's headers from the Debian packages, diffusers' wheel, Fashion-MNIST's
#     IDX files.
# There (the repository's root, with .carry carried along):
#   dev/gpu_check.sh [build] [test] [train] [bench] [layout] [precision] [compile]
#                                                                 (no stage: all of them)
#     build  CMake + Ninja into build-gpu/, against python3's torch (kept while the machine is)
#     test   the whole CTest suite, CUDA cases included
#     train  Fashion-MNIST in bf16 for TRAIN_SECONDS, then DDPM and DDIM grids and `ddpm eval`
#     bench  dev/bench_compare.py on configs/cifar10.json (bf16, batch 128, sampling 1024)
#            against diffusers eager and compiled
#     layout our channels-last against our default (contiguous) layout on the GPU, same setting
#     precision  fp32 against bf16 and fp16: `ddpm bench` training (batch 128) and DDIM-50
#            sampling (batch 1024) on configs/cifar10.json, then PRECISION_STEPS training steps
#            of configs/fashion_mnist.json in each (loss, skipped steps, fp16's loss scale)
#     compile  `ddpm compile` of a CIFAR-10-config model for CUDA in bf16 (--max-batch 256),
#            then dev/bench_compare.py --package at sampling batches 1, 16 and 256: our eager
#            path, the package, diffusers eager and compiled (docs/COMPILE.md)
#   Every stage builds first (a no-op when build-gpu/ is current). Logs, grids and JSON go to
#   build-gpu/check/; where $OUT is set (the device tool's returned folder, which takes at most
#   8 files), summary.txt, the grids and check.tar.gz (all of build-gpu/check) are copied there,
#   also when a stage fails. The last lines printed are the summary.
#
# One device call runs at most 10 minutes: split the stages over calls (for instance
# `build test`, then `train`, then `bench`, then `layout`), made while the machine is still warm.
# Environment: TRAIN_SECONDS (default 240), BENCH_ROUNDS (default 5), PRECISION_STEPS (default
# 1500), JOBS (default: all cores),
# DDPM_CHECK_DEVICE (default cuda; `cpu` rehearses the stages here with small settings),
# DDPM_CHECK_BUILD_DIR (default build-gpu; `build` rehearses with the build of setup.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
carry="$root/.carry"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'gpu_check: %s\n' "$*" >&2; exit 1; }

prepare() {
  local venv_python="$root/.venv/bin/python"
  [[ -x "$venv_python" ]] || die "no .venv: run scripts/setup.sh --test first"
  local missing=()
  for path in /usr/include/cxxopts.hpp /usr/include/nlohmann /usr/include/spdlog /usr/include/fmt \
              /usr/include/stb/stb_image.h /usr/include/gloo /usr/src/googletest \
              /usr/share/datasets/fashion-mnist; do
    [[ -e "$path" ]] || missing+=("$path")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]}: run scripts/setup.sh --test --data"
  rm -rf "$carry.partial"
  mkdir -p "$carry.partial/deps/include/stb" "$carry.partial/wheels"
  cp -r /usr/include/cxxopts.hpp /usr/include/nlohmann /usr/include/spdlog /usr/include/fmt \
        /usr/include/gloo "$carry.partial/deps/include/"
  cp /usr/include/stb/stb_image.h /usr/include/stb/stb_image_write.h \
     "$carry.partial/deps/include/stb/"
  cp -r /usr/src/googletest "$carry.partial/deps/googletest"
  cp -r /usr/share/datasets/fashion-mnist "$carry.partial/fashion-mnist"
  # diffusers is pure Python; of its needs, the GPU machine lacks only importlib_metadata.
  local version
  version="$("$venv_python" -c 'import diffusers; print(diffusers.__version__)')"
  "$venv_python" -m pip download --quiet --no-deps --only-binary=:all: \
    -d "$carry.partial/wheels" "diffusers==$version" importlib_metadata
  rm -rf "$carry"
  mv "$carry.partial" "$carry"
  say "filled $carry ($(du -sh "$carry" | cut -f1)); name .carry in the device call's carry"
}

# --- on the GPU machine --------------------------------------------------------------------

build_dir="${DDPM_CHECK_BUILD_DIR:-$root/build-gpu}"
out="$build_dir/check"
device="${DDPM_CHECK_DEVICE:-cuda}"
jobs="${JOBS:-$(nproc)}"
summary=()
note() { summary+=("$*"); say "$*"; }
# logged LOG COMMAND...: appends the command's output to $out/LOG; on failure shows its end.
logged() {
  local log="$out/$1"
  shift
  "$@" >> "$log" 2>&1 || { local status=$?; tail -20 "$log" >&2; die "failed ($status): $*"; }
}

setup_python() {
  [[ -d "$carry" ]] || die "$carry is missing: run dev/gpu_check.sh prepare here and carry .carry"
  if ! python3 -c 'import diffusers' 2>/dev/null; then
    local site=/tmp/ddpm-check-site
    if [[ ! -d "$site/diffusers" ]]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
        "$carry"/wheels/*.whl
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  fi
}

describe_machine() {
  mkdir -p "$out"
  {
    date -u '+%Y-%m-%d %H:%M UTC'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
    python3 -c 'import torch, diffusers; print("torch", torch.__version__, "cuda", torch.version.cuda,
"diffusers", diffusers.__version__)'
    (nvcc --version 2>/dev/null | tail -1) || echo "no nvcc"
    c++ --version | head -1
    echo "cores $(nproc)"
  } > "$out/machine.txt" 2>&1
  cat "$out/machine.txt" >&2
}

build() {
  local started=$SECONDS
  if [[ ! -f "$build_dir/build.ninja" ]]; then
    cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DDDPM_PYTHON="$(command -v python3)" -DDDPM_CARRIED_DEPS="$carry/deps" \
      > "$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; die "configure failed"; }
  fi
  ninja -C "$build_dir" -j "$jobs" > "$out/build.log" 2>&1 ||
    { grep -B2 -A12 -m3 'error' "$out/build.log" || tail -40 "$out/build.log"; die "build failed"; }
  note "build: ok in $((SECONDS - started)) s"
}

run_tests() {
  local started=$SECONDS status=0
  (cd "$build_dir" && ctest -j "$((jobs / 2 > 0 ? jobs / 2 : 1))" --output-on-failure \
      --timeout 900) > "$out/ctest.log" 2>&1 || status=$?
  grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1 >&2 || true
  sed -n '/The following tests/,$p' "$out/ctest.log" >&2
  note "test: exit $status in $((SECONDS - started)) s; $(grep -E 'tests passed' "$out/ctest.log" |
    tail -1)"
  if [[ "$device" == cuda ]] && grep -q 'CudaMatchesCpu .*Skipped' "$out/ctest.log"; then
    note "test: the CUDA cases were SKIPPED: the build or the driver sees no GPU"
  fi
}

train_and_sample() {
  local started=$SECONDS seconds="${TRAIN_SECONDS:-240}" config=configs/fashion_mnist.json
  local settings=(--set train.log_every=100 --set train.sample_every=0)
  local samples=2000 ddpm_images=64 features_epochs=4
  if [[ "$device" == cpu ]]; then  # a rehearsal of the stage: the tiny model, a few images
    config=configs/tiny.json; seconds="${TRAIN_SECONDS:-20}"; samples=64; ddpm_images=4
    settings=(--set train.log_every=10 --set train.sample_every=0)
    features_epochs=1
  fi
  local data="$root/data/fashion-mnist" run="$build_dir/check-run"
  [[ -f "$data/.prepared.json" ]] || logged prepare.log python3 \
    "$root/scripts/prepare_fashion_mnist.py" --input "$carry/fashion-mnist" --output "$data"
  # The feature network for `ddpm eval` trains on the CPU meanwhile.
  local features="$root/data/feature-nets/fashion_mnist.pt"
  if [[ -f "$features" ]]; then
    true &
  else
    python3 "$root/scripts/train_feature_net.py" --input "$carry/fashion-mnist" \
      --epochs "$features_epochs" --threads 8 > "$out/feature_net.log" 2>&1 &
  fi
  local features_pid=$!

  rm -rf "$run" "$out"/{grid_ddpm.png,grid_ddim.png,sample.log,eval.log,eval.json}
  # A fixed time budget: SIGINT makes ddpm finish the step, write a checkpoint and exit.
  local status=0
  timeout -s INT "$seconds" "$build_dir/ddpm" train --config "$root/$config" --data "$data/train" \
    --out "$run" --set train.device="$device" "${settings[@]}" --set train.steps=1000000 \
    > "$out/train.log" 2>&1 || status=$?
  ((status == 0 || status == 124 || status == 130)) || { tail -20 "$out/train.log"; die "train failed"; }
  cp "$run/metrics.jsonl" "$out/metrics.jsonl"
  note "train: $(tail -1 "$run/metrics.jsonl")"

  local sample=("$build_dir/ddpm" sample --checkpoint "$run" --device "$device")
  logged sample.log "${sample[@]}" --sampler ddpm --steps 1000 --num "$ddpm_images" \
    --out "$run/ddpm" --grid "$out/grid_ddpm.png"
  # Image k depends only on the seed and k: this grid shows the first 64 of the images below.
  logged sample.log "${sample[@]}" --sampler ddim --steps 100 --num 64 --out "$run/ddim64" \
    --grid "$out/grid_ddim.png"
  logged sample.log "${sample[@]}" --sampler ddim --steps 100 --num "$samples" --batch 500 \
    --out "$run/ddim"
  note "sample (DDPM-1000, DDIM-100 x2): $(grep -o '[0-9.]* images/s' "$out/sample.log" |
    tr '\n' ' ')"

  wait "$features_pid" || { tail "$out/feature_net.log"; die "the feature network failed"; }
  logged eval.log "$build_dir/ddpm" eval --real "$data/test" --generated "$run/ddim" \
    --device "$device" --features "$features" --json "$out/eval.json" --overwrite
  note "eval ($samples DDIM-100 images against the test split): $(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(", ".join(f"{k} {r[k]:.4g}" for k in ("fid", "kid_mean", "kid_std", "precision", "recall")))
' "$out/eval.json")"
  note "train+sample+eval: $((SECONDS - started)) s"
}

# The performance issue's setting: CIFAR-10's model, bf16, training batch 128, sampling 1024.
bench_arguments() {
  local -n into=$1
  into=(configs/cifar10.json --device "$device" --precision bf16 --train-batch 128
        --train-steps 50 --sample-batch 1024 --ddim-steps 50 --rounds "${BENCH_ROUNDS:-5}")
  if [[ "$device" == cpu ]]; then
    into=(configs/tiny.json --device cpu --rounds 2 --train-steps 2 --ddim-steps 2 --ddpm-steps 2)
  fi
}

bench() {
  local started=$SECONDS args
  bench_arguments args
  (cd "$root" && python3 dev/bench_compare.py "${args[@]}" --python "$(command -v python3)" \
     --ddpm "$build_dir/ddpm" --out "$out/bench") > "$out/bench.log" 2>&1 ||
    { tail -30 "$out/bench.log"; die "bench_compare failed"; }
  sed -n '/ddpm bench vs its peers/,$p' "$out/bench.log" >&2
  note "bench: $((SECONDS - started)) s"
}

# On CUDA our default layout is contiguous (device.h's prefers_channels_last): measure the other.
layout() {
  local started=$SECONDS args
  bench_arguments args
  (cd "$root" && python3 dev/bench_compare.py "${args[@]}" --python "$(command -v python3)" \
     --no-diffusers --ddpm "$build_dir/ddpm" --out "$out/layout" \
     --variant "channels_last=--memory-format channels_last") > "$out/layout.log" 2>&1 ||
    { tail -30 "$out/layout.log"; die "the layout A/B failed"; }
  sed -n '/ddpm bench vs its peers/,$p' "$out/layout.log" >&2
  note "layout: $((SECONDS - started)) s"
}

# fp32, bf16 and fp16 (train.precision, sample.precision) on the same settings: speed and memory
# of `ddpm bench`, and where each precision's training loss goes (fp16 must not drift or skip
# more than a few steps while its loss scale settles).
precision() {
  local started=$SECONDS config=configs/cifar10.json steps="${PRECISION_STEPS:-1500}"
  local train_config=configs/fashion_mnist.json data="$root/data/fashion-mnist"
  local bench_train=(--mode train --batch 128 --steps 50 --rounds "${BENCH_ROUNDS:-5}")
  local bench_sample=(--mode sample --sampler ddim --chain-steps 50 --batch 1024 --steps 20
                      --rounds "${BENCH_ROUNDS:-5}")
  if [[ "$device" == cpu ]]; then
    config=configs/tiny.json; steps="${PRECISION_STEPS:-20}"; train_config=configs/tiny.json
    bench_train=(--mode train --batch 16 --steps 2 --rounds 2)
    bench_sample=(--mode sample --sampler ddim --chain-steps 2 --batch 16 --steps 2 --rounds 2)
  fi
  [[ -f "$data/.prepared.json" ]] || logged prepare.log python3 \
    "$root/scripts/prepare_fashion_mnist.py" --input "$carry/fashion-mnist" --output "$data"
  mkdir -p "$out/precision"
  local p mode line
  for p in fp32 bf16 fp16; do
    logged precision.log "$build_dir/ddpm" bench --config "$root/$config" --device "$device" \
      --precision "$p" "${bench_train[@]}" --json "$out/precision/train_$p.json"
    logged precision.log "$build_dir/ddpm" bench --config "$root/$config" --device "$device" \
      --precision "$p" "${bench_sample[@]}" --json "$out/precision/sample_$p.json"
    rm -rf "$build_dir/precision-run-$p"
    logged precision.log "$build_dir/ddpm" train --config "$root/$train_config" \
      --data "$data/train" --out "$build_dir/precision-run-$p" --set train.device="$device" \
      --set train.precision="\"$p\"" --set train.steps="$steps" --set train.sample_every=0 \
      --set train.log_every=100
    cp "$build_dir/precision-run-$p/metrics.jsonl" "$out/precision/metrics_$p.jsonl"
  done
  for p in fp32 bf16 fp16; do
    line="$(python3 -c '
import json, sys
folder, p = sys.argv[1], sys.argv[2]
train = json.load(open(f"{folder}/train_{p}.json"))
sample = json.load(open(f"{folder}/sample_{p}.json"))
last = [json.loads(l) for l in open(f"{folder}/metrics_{p}.jsonl")][-1]
print("%s: train %.1f img/s, %.2f GiB; DDIM sampling %.1f img/s; loss at step %d %.5f, "
      "skipped %d, loss scale %s" % (p, train["train_images_per_s"],
      train["peak_memory_bytes"] / 2**30, sample["sample_images_per_s"], last["step"],
      last["loss"], last["skipped_steps"], last.get("loss_scale", "-")))
' "$out/precision" "$p")"
    note "precision $line"
  done
  note "precision: $((SECONDS - started)) s"
}

# `ddpm compile` on the GPU: a CIFAR-10-config model (2 training steps on drawn images: the speed
# does not depend on the weights) compiled for CUDA in bf16, against the eager path and
# diffusers at sampling batches 1, 16 and 256.
compile_package() {
  local started=$SECONDS config=configs/cifar10.json batches=(1 16 256) steps=50 max=256
  if [[ "$device" == cpu ]]; then
    config=configs/tiny.json batches=(4) steps=2 max=8
  fi
  local images="$build_dir/compile-images" run="$build_dir/compile-run"
  local package="$build_dir/compile-run.pt2"
  python3 - "$images/x" "$root/$config" <<'PY'
import json, os, sys, torch
from PIL import Image
data = json.load(open(sys.argv[2]))["data"]
size = data["image_size"] if isinstance(data["image_size"], int) else data["image_size"][0]
os.makedirs(sys.argv[1], exist_ok=True)
generator = torch.Generator().manual_seed(0)
for k in range(8):
    pixels = torch.randint(0, 256, (size, size, data.get("channels", 3)), generator=generator)
    Image.fromarray(pixels.squeeze(-1).to(torch.uint8).numpy()).save(f"{sys.argv[1]}/{k}.png")
PY
  rm -rf "$run"
  logged compile.log "$build_dir/ddpm" train --config "$root/$config" --data "$images" \
    --out "$run" --set train.steps=2 --set train.batch_size=2 --set train.checkpoint_every=2 \
    --set train.sample_every=0 --set train.device="$device"
  local precision=bf16
  [[ "$device" == cpu ]] && precision=fp32
  logged compile.log "$build_dir/ddpm" compile --checkpoint "$run" --out "$package" \
    --device "$device" --precision "$precision" --max-batch "$max" --overwrite \
    --python "$(command -v python3)"
  note "compile: $(grep -o 'wrote .*' "$out/compile.log" | tail -1)"
  local batch
  for batch in "${batches[@]}"; do
    (cd "$root" && python3 dev/bench_compare.py "$config" --device "$device" \
       --precision "$precision" --figures ddim --sample-batch "$batch" --ddim-steps "$steps" \
       --rounds "${BENCH_ROUNDS:-5}" --package "$package" --python "$(command -v python3)" \
       --ddpm "$build_dir/ddpm" --out "$out/compile-bench-$batch") \
      > "$out/compile-bench-$batch.log" 2>&1 ||
      { tail -30 "$out/compile-bench-$batch.log"; die "bench_compare --package failed"; }
    sed -n '/ddpm bench vs its peers/,$p' "$out/compile-bench-$batch.log" >&2
    note "compile batch $batch: $(grep 'package/peer' "$out/compile-bench-$batch.log")"
  done
  note "compile: $((SECONDS - started)) s"
}

# The device tool brings back at most 8 files from $OUT.
export_results() {
  local status=$?
  ((${#summary[@]})) && printf '%s\n' "${summary[@]}" > "$out/summary.txt"
  if [[ -n "${OUT:-}" && -d "$out" ]]; then
    cp "$out"/summary.txt "$out"/grid_*.png "$OUT/" 2>/dev/null || true
    tar -czf "$OUT/check.tar.gz" -C "$build_dir" check 2>/dev/null || true
  fi
  return $status
}

main() {
  if [[ "${1:-}" == prepare ]]; then
    prepare
    return
  fi
  local stages=("$@")
  ((${#stages[@]})) || stages=(build test train bench layout precision compile)
  for stage in "${stages[@]}"; do
    case "$stage" in
      build|test|train|bench|layout|precision|compile) ;;
      *) die "unknown stage '$stage' (build, test, train, bench, layout, precision, compile," \
             "or prepare)" ;;
    esac
  done
  mkdir -p "$out"
  trap export_results EXIT
  setup_python
  describe_machine
  build
  for stage in "${stages[@]}"; do
    case "$stage" in
      test) run_tests ;;
      train) train_and_sample ;;
      bench) bench ;;
      layout) layout ;;
      precision) precision ;;
      compile) compile_package ;;
    esac
  done
  printf '\n== summary (%s)\n' "$(head -1 "$out/machine.txt")"
  printf '%s\n' "${summary[@]}"
}

main "$@"
