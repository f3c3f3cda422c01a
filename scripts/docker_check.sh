#!/usr/bin/env bash
# Builds the CPU image offline and runs it for real, unattended, on a fresh Debian machine:
#   1. installs the Docker engine (Debian's docker.io, containerd, runc, iptables) and debootstrap
#      when missing, and starts dockerd privately (its own data root, exec root and socket),
#      stopping it at the end;
#   2. makes the base image with debootstrap from this machine's own Debian apt source (else
#      debootstrap's default) and `docker import`s it under the Dockerfile's BASE_IMAGE name
#      (debian:MAJOR.MINOR, a point release) when it is missing, after checking that the tree is
#      that release (no registry is needed);
#   3. fetches the wheels into docker/wheels/cpu (scripts/docker_wheels.sh) when they are missing,
#      and builds the image with OFFLINE=1 (pip --no-index: no Python index inside the build);
#   4. inside containers: `ddpm --version`, `ddpm info`, a tiny `ddpm train` on images in a
#      mounted volume, `ddpm sample` of that run, two Gloo ranks under torchrun, `ddpm compile`
#      of the run in the build stage and `ddpm sample` of that package in the image, `ddpm eval`
#      of the samples on the feature network the image installs; then checks
#      on the host that the PNGs are there and that the files belong to the image's ddpm user
#      (default) or to the invoking user's id (docker run --user "$(id -u):$(id -g)"; as root,
#      the sudo caller's id or 4321).
# Needs root (or sudo). Any failure, starting the engine included, exits non-zero with the
# reason. Environment: DDPM_DOCKER_STATE (default /var/tmp/ddpm-docker: the engine's data root,
# kept between runs as a cache), DDPM_DOCKER_TAG (default ddpm:cpu-check), JOBS (compile jobs
# inside the build; default all cores).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${DDPM_DOCKER_STATE:-/var/tmp/ddpm-docker}"
tag="${DDPM_DOCKER_TAG:-ddpm:cpu-check}"
exec_root="/tmp/ddpm-docker-exec.$$"   # short: it holds unix sockets
socket="/tmp/ddpm-docker.$$.sock"
work=""
dockerd_pid=""
started=$SECONDS
timings=()
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'docker_check: %s\n' "$*" >&2; exit 1; }
lap() { timings+=("$1: $((SECONDS - ${2})) s"); say "$1: $((SECONDS - ${2})) s"; }

sudo=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
    die "needs root or password-less sudo to install and run the Docker engine"
  sudo="sudo -n"
fi

cleanup() {
  local status=$?
  if [[ -n "$dockerd_pid" ]]; then
    $sudo kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 50); do $sudo kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  [[ -n "$work" ]] && $sudo rm -rf "$work"
  $sudo rm -rf "$exec_root" "$socket"
  exit $status
}
trap cleanup EXIT

# 1. The engine.
step=$SECONDS
missing=()
for package in docker.io containerd runc iptables debootstrap; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
fi
$sudo mkdir -p "$state/data"
# Measured here: the engine's data root holds 4 GB after a CPU build (image 0.9 GB, build
# stage and cache 3 GB); a rebuild needs room for a second build stage beside the cached one.
free_kb="$(df -Pk "$state" | awk 'NR == 2 { print $4 }')"
if [[ -n "$free_kb" ]] && ((free_kb < 5 * 1024 * 1024)); then
  die "$state has $((free_kb / 1024)) MB free; building the image needs about 5 GB there. Free" \
      "space, or set DDPM_DOCKER_STATE to a folder on another disk"
fi
say "starting dockerd (data root $state/data, socket $socket)"
$sudo dockerd --data-root "$state/data" --exec-root "$exec_root" -H "unix://$socket" \
  --pidfile "$exec_root.pid" > "$state/dockerd.log" 2>&1 &
dockerd_pid=$!
docker() { $sudo env DOCKER_HOST="unix://$socket" docker "$@"; }
for _ in $(seq 120); do
  docker info >/dev/null 2>&1 && break
  $sudo kill -0 "$dockerd_pid" 2>/dev/null ||
    { tail -20 "$state/dockerd.log" >&2; die "dockerd exited at start (log above)"; }
  sleep 0.5
done
docker info >/dev/null 2>&1 ||
  { tail -20 "$state/dockerd.log" >&2; die "dockerd did not answer within 60 s (log above)"; }
lap "engine" "$step"

# 2. The base image.
step=$SECONDS
base="$(sed -n 's/^ARG BASE_IMAGE=//p' "$root/Dockerfile" | head -1)"
[[ -n "$base" ]] || die "the Dockerfile names no BASE_IMAGE"
if ! docker image inspect "$base" >/dev/null 2>&1; then
  release="${base##*:}"
  case "${release%%.*}" in
    11) suite=bullseye ;;
    12) suite=bookworm ;;
    13) suite=trixie ;;
    *) die "the Dockerfile's BASE_IMAGE '$base' is not debian:MAJOR.MINOR (11 to 13)," \
           "so debootstrap cannot make it; pull it from a registry instead" ;;
  esac
  # The mirror is this machine's own apt source (the first Debian URI it lists); without one,
  # debootstrap's default.
  mirror="$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list /etc/apt/sources.list |
    grep -oE '(https?|file)://[^ ]*/debian/?' | head -1 || true)"
  say "making $base with debootstrap ($suite, minbase) from" \
      "${mirror:-the default mirror of debootstrap}"
  rootfs="$state/rootfs-$suite"
  $sudo rm -rf "$rootfs"
  $sudo debootstrap --variant=minbase "$suite" "$rootfs" ${mirror:+"$mirror"} \
    > "$state/debootstrap.log" 2>&1 ||
    { tail -20 "$state/debootstrap.log" >&2; die "debootstrap failed"; }
  made="$(cat "$rootfs/etc/debian_version" 2>/dev/null || true)"
  if [[ "$made" != "$release" ]]; then
    $sudo rm -rf "$rootfs"
    die "debootstrap made Debian ${made:-(unknown)} from ${mirror:-the default mirror}, not the" \
        "Dockerfile's pinned $release: the mirror has moved to another point release. Pull" \
        "$base from a registry, or move BASE_IMAGE in the Dockerfile to debian:$made (a" \
        "deliberate change of the base)."
  fi
  $sudo tar -C "$rootfs" -c . | docker import - "$base" >/dev/null
  $sudo rm -rf "$rootfs"
fi
lap "base image $base" "$step"

# 3. The image, offline.
step=$SECONDS
if ! ls "$root"/docker/wheels/cpu/torch-*+cpu-*.whl >/dev/null 2>&1; then
  DDPM_PYTHON="${DDPM_PYTHON:-$root/.venv/bin/python}"
  [[ -x "$DDPM_PYTHON" ]] || DDPM_PYTHON=python3
  DDPM_PYTHON="$DDPM_PYTHON" bash "$root/scripts/docker_wheels.sh" cpu
fi
say "building $tag offline (log: $state/build.log)"
docker build -t "$tag" --build-arg OFFLINE=1 ${JOBS:+--build-arg JOBS="$JOBS"} "$root" \
  > "$state/build.log" 2>&1 || { tail -30 "$state/build.log" >&2; die "docker build failed"; }
# The build stage, where `ddpm compile` runs (its layers are the build's cache: no rebuild).
docker build -t "$tag-build" --target build --build-arg OFFLINE=1 \
  ${JOBS:+--build-arg JOBS="$JOBS"} "$root" >> "$state/build.log" 2>&1 ||
  { tail -30 "$state/build.log" >&2; die "docker build --target build failed"; }
# The image this build replaced (and its layers) would stay as cache forever: drop it.
docker image prune -f >/dev/null || true
size="$(docker image inspect --format '{{.Size}}' "$tag")"
lap "build (image $((size / 1000000)) MB)" "$step"

# 4. Run it.
step=$SECONDS
work="$(mktemp -d /tmp/ddpm-docker-work.XXXXXX)"
chmod 777 "$work"
# 32 gray 28x28 PNGs with smooth patterns, written with Python's standard library only.
python3 - "$work/images" <<'PY'
import os, struct, sys, zlib, math
folder = sys.argv[1]
os.makedirs(folder)
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xffffffff)
for k in range(32):
    wave = lambda x, y: int(127.5 + 127.5 * math.sin(0.3 * (x + k) + 0.2 * y * (1 + k % 3)))
    rows = b"".join(b"\0" + bytes(wave(x, y) for x in range(28)) for y in range(28))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    open(os.path.join(folder, f"image_{k:02d}.png"), "wb").write(png)
PY
run() { docker run --rm --network none -v "$work:/work" "$@"; }
# The id `--user` runs as: the invoking user's; under root, the sudo caller's, else an ordinary
# user's id (4321), so that the check tells a mapped id from root.
as_uid="$(id -u)" as_gid="$(id -g)"
if [[ "$as_uid" == 0 ]]; then as_uid="${SUDO_UID:-4321}" as_gid="${SUDO_GID:-4321}"; fi
expected="ddpm $(sed -n 's/^project(ddpm VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")"
version="$(run "$tag" --version)"
[[ "$version" == "$expected" ]] ||
  die "ddpm --version in the image printed '$version', not '$expected'"
run "$tag" info > "$work/info.txt" || die "ddpm info failed in the image"
grep -q "parameters" "$work/info.txt" || die "ddpm info printed no parameter count"
train=(train --config /opt/ddpm/configs/tiny.json --data /work/images --set train.steps=4
       --set train.batch_size=8 --set train.log_every=2 --set train.checkpoint_every=2
       --set train.sample_every=0 --set train.device="cpu" --threads 1)
run "$tag" "${train[@]}" --out /work/run > "$work/train.log" 2>&1 ||
  { tail -20 "$work/train.log" >&2; die "ddpm train failed in the image"; }
run --user "$as_uid:$as_gid" "$tag" sample --checkpoint /work/run --out /work/samples --num 4 \
  --steps 4 --device cpu > "$work/sample.log" 2>&1 ||
  { tail -20 "$work/sample.log" >&2; die "ddpm sample failed in the image"; }
run --entrypoint torchrun "$tag" --no-python --nproc-per-node=2 --master-port=29533 \
  ddpm "${train[@]}" --out /work/run2 > "$work/torchrun.log" 2>&1 ||
  { tail -30 "$work/torchrun.log" >&2; die "two Gloo ranks under torchrun failed in the image"; }
run --entrypoint /opt/ddpm/bin/ddpm "$tag-build" compile --checkpoint /work/run \
  --out /work/run.pt2 --max-batch 4 --threads 2 > "$work/compile.log" 2>&1 ||
  { tail -20 "$work/compile.log" >&2; die "ddpm compile failed in the build stage"; }
run "$tag" sample --checkpoint /work/run.pt2 --out /work/compiled --num 4 --batch 4 --steps 4 \
  --device cpu > "$work/sample_compiled.log" 2>&1 ||
  { tail -20 "$work/sample_compiled.log" >&2; die "sampling the package failed in the image"; }
# ddpm eval without --features: the default feature network the image installs.
run "$tag" eval --real /work/images --generated /work/samples --metrics fid --threads 1 \
  > "$work/eval.log" 2>&1 || { tail -20 "$work/eval.log" >&2; die "ddpm eval failed in the image"; }
grep -q '^features_file *"/opt/ddpm/share/ddpm/feature-nets/fashion_mnist.pt"' "$work/eval.log" ||
  { tail -20 "$work/eval.log" >&2; die "ddpm eval in the image did not use the installed default" \
                                        "feature network"; }
lap "runs in the container" "$step"

# On the host: the files, their owners and the PNGs' signatures.
image_uid="$(docker run --rm --entrypoint id "$tag" -u)"
owner() { stat -c %u "$1"; }
[[ -f "$work/run/checkpoints/latest" ]] || die "the run wrote no checkpoints/latest"
[[ "$(owner "$work/run/metrics.jsonl")" == "$image_uid" ]] ||
  die "the run's files belong to uid $(owner "$work/run/metrics.jsonl"), not the image's" \
      "ddpm user's ($image_uid)"
count=0
for png in "$work"/samples/sample_*.png; do
  [[ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] ||
    die "$png is not a PNG"
  [[ "$(owner "$png")" == "$as_uid" ]] ||
    die "$png belongs to uid $(owner "$png"), not the invoking user's $as_uid (--user)"
  count=$((count + 1))
done
((count == 4)) || die "ddpm sample wrote $count PNGs, not 4"
compiled=("$work"/compiled/sample_*.png)
((${#compiled[@]} == 4)) && [[ -f "${compiled[0]}" ]] ||
  die "ddpm sample of the compiled package wrote ${#compiled[@]} PNGs, not 4"
grep -q "2 processes (gloo" "$work/torchrun.log" ||
  { tail -20 "$work/torchrun.log" >&2; die "torchrun's run did not train on 2 Gloo processes"; }
[[ -f "$work/run2/checkpoints/latest" ]] || die "the torchrun run wrote no checkpoint"

say "passed: $version; image $tag $((size / 1000000)) MB; 4 PNGs owned by uid $as_uid; 2 Gloo" \
    "ranks; a package compiled in the build stage sampled in the image; eval on the installed" \
    "feature network"
printf '%s\n' "${timings[@]}" "total: $((SECONDS - started)) s" >&2
