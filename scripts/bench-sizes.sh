#!/usr/bin/env bash
# Measures issue 8's features and prints markdown rows for BENCHMARKS.md:
#   1. per-request sizes: server CPU with 1 and with 50 viewers at ?width=640 of a 720p camera
#      (one downscale per frame for all of them), and 1 viewer at full size for reference;
#   2. --drop-same-frames: bytes sent to one viewer of a static scene with and without it.
# CPU is the server process's CPU seconds over the run (/proc/PID/stat via mjpegd-load --pid),
# which resists a busy machine better than fps does.
#
# Environment: BENCH_DURATION (seconds per case, default 15), BENCH_FRAMES (720p JPEG folder,
# default /work/shared/frames/720p), BENCH_PORT (default 18480), BENCH_BIN (default target/debug,
# whose dev profile is optimized; target/release also works).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-15}
FRAMES=$(cd "${BENCH_FRAMES:-/work/shared/frames/720p}" && pwd)
PORT=${BENCH_PORT:-18480}
BIN=${BENCH_BIN:-target/debug}
SERVER=$BIN/mjpegd
LOAD=$BIN/mjpegd-load
[ -x "$SERVER" ] && [ -x "$LOAD" ] || { echo "build first: cargo build -p mjpegd -p mjpegd-load" >&2; exit 1; }

PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap stop EXIT

# start SOURCE [FLAGS...]: an mjpegd on $PORT
start() {
    local source=$1; shift
    "$SERVER" --source "$source" --fps 30 --idle-timeout 60 --listen "127.0.0.1:$PORT" --public-state "$@" \
        >/dev/null 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/api/state" && return 0
        sleep 0.1
    done
    echo "mjpegd did not start" >&2; exit 1
}

field() { python3 -c "import json,sys; r=json.load(sys.stdin); v=$1; print(round(v, 1) if isinstance(v, float) else v)"; }

# case LABEL PATH VIEWERS: one run against the running server
run_case() {
    local label=$1 path=$2 viewers=$3
    local json snap
    snap=$(mktemp)
    # The sizes live only while their viewers do: read the state near the end of the run.
    (sleep "$(python3 -c "print($DURATION * 0.9)")"; curl -sf "http://127.0.0.1:$PORT/api/state" >"$snap") &
    local reader=$!
    json=$("$LOAD" run --url "http://127.0.0.1:$PORT$path" --viewers "$viewers" --duration "$DURATION" \
        --pid "$PID" --json --label "$label")
    wait "$reader"
    local state
    state=$(cat "$snap"); rm -f "$snap"
    local cpu fps mbs scaled captured
    cpu=$(echo "$json" | field "r['server']['cpu_percent']")
    fps=$(echo "$json" | field "r['fps']['median']")
    mbs=$(echo "$json" | field "r['mbytes_per_s']")
    scaled=$(echo "$state" | field "sum(s['frames_scaled'] for s in r['cameras'][0]['sizes'])")
    captured=$(echo "$state" | field "r['cameras'][0]['frames_captured']")
    echo "| $label | $viewers | $cpu | $fps | $mbs | $scaled / $captured |"
}

echo "Per-request sizes ($DURATION s per case, server $(basename "$BIN") build):"
echo
echo "| case | viewers | server CPU % | median fps per viewer | MB/s received (all viewers) | frames scaled / captured (at 90% of the run) |"
echo "|---|---|---|---|---|---|"
start "images:$FRAMES"
run_case "?width=640, 1 viewer" "/stream?width=640" 1
stop; start "images:$FRAMES"
run_case "?width=640, 50 viewers" "/stream?width=640" 50
stop; start "images:$FRAMES"
run_case "full size, 1 viewer" "/stream" 1
stop

STATIC=$(mktemp -d)
trap 'stop; rm -rf "$STATIC"' EXIT
cp "$(find "$FRAMES" -maxdepth 1 -name '*.jpg' | sort | head -n 1)" "$STATIC/still.jpg"
echo
echo "Static scene (one 720p image at 30 fps), 1 viewer, $DURATION s:"
echo
echo "| case | server CPU % | frames received | MB received | MB/s |"
echo "|---|---|---|---|---|"
for flag in "" "--drop-same-frames"; do
    start "images:$STATIC" $flag
    json=$("$LOAD" run --url "http://127.0.0.1:$PORT/stream" --viewers 1 --duration "$DURATION" --pid "$PID" --json)
    cpu=$(echo "$json" | field "r['server']['cpu_percent']")
    frames=$(echo "$json" | field "r['frames']")
    mb=$(echo "$json" | field "round(r['bytes']/1e6, 2)")
    mbs=$(echo "$json" | field "r['mbytes_per_s']")
    echo "| ${flag:-default} | $cpu | $frames | $mb | $mbs |"
    stop
done
