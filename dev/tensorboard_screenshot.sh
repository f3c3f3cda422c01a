#!/usr/bin/env bash
# A screenshot of TensorBoard showing a run's event files, as the README's: starts
# `tensorboard --logdir` on a free local port, waits for it, has headless Chromium (Debian's
# `chromium`) draw the time-series page with SVG charts (TensorBoard's forceSVG flag: headless
# Chromium has no WebGL to draw the default ones), saves a PNG and stops TensorBoard.
#
#   dev/tensorboard_screenshot.sh LOGDIR OUT.png [WIDTH HEIGHT] [TAG_FILTER]
#
# TAG_FILTER is TensorBoard's tag regex (default: loss|lr|grad_norm|ema_decay|sample).
# Needs .venv/bin/tensorboard (scripts/setup.sh --test) and chromium (sudo apt-get install
# chromium).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 2 ]] || { echo "usage: $0 LOGDIR OUT.png [WIDTH HEIGHT] [TAG_FILTER]" >&2; exit 2; }
logdir="$1" out="$2" width="${3:-1600}" height="${4:-1000}"
filter="${5:-loss|lr|grad_norm|ema_decay|sample}"
tensorboard="$root/.venv/bin/tensorboard"
[[ -d "$logdir" ]] || { echo "error: $logdir is not a folder" >&2; exit 2; }
die() { echo "error: $*" >&2; exit 1; }
[[ -x "$tensorboard" ]] || die "$tensorboard is missing; run scripts/setup.sh --test"
command -v chromium >/dev/null || die "chromium is missing: sudo apt-get install chromium"
[[ ! -e "$out" ]] || { echo "error: $out exists; remove it first" >&2; exit 2; }

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
log="$(mktemp)"
"$tensorboard" --logdir "$logdir" --port "$port" --host 127.0.0.1 >"$log" 2>&1 &
board=$!
profile="$(mktemp -d)"
trap 'kill "$board" 2>/dev/null; rm -rf "$profile" "$log"' EXIT
for _ in $(seq 60); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/data/runs')" \
    2>/dev/null && break
  kill -0 "$board" 2>/dev/null || { cat "$log" >&2; die "tensorboard stopped"; }
  sleep 1
done
query="forceSVG=true&tagFilter=$(python3 -c 'import sys, urllib.parse
print(urllib.parse.quote(sys.argv[1]))' "$filter")"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$width,$height" --virtual-time-budget=60000 --run-all-compositor-stages-before-draw \
  --screenshot="$out" \
  "http://127.0.0.1:$port/?$query#timeseries" >/dev/null 2>&1
[[ -s "$out" ]] || die "chromium wrote no screenshot"
echo "wrote $out (${width}x${height}) of tensorboard --logdir $logdir"
