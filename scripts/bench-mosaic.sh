#!/usr/bin/env bash
# Measures /mosaic: server CPU of one composition of N 720p cameras (1280 wide, 10 fps) with
# 1 viewer and with 50 (one composition shared by all: the cost should not grow with viewers),
# for N = 4 and 12; prints markdown rows for BENCHMARKS.md. CPU is the server process's CPU
# over the run (/proc/PID/stat via mjpegd-load --pid); it includes capturing the N cameras,
# which the case at 0.2 fps (one composition every 5 s) measures nearly alone.
#
# Environment: BENCH_DURATION (seconds per case, default 15), BENCH_FRAMES (720p JPEG folder,
# default /work/shared/frames/720p), BENCH_PORT (default 18490), BENCH_BIN (default
# target/release; target/debug, whose dependencies are optimized, also works), BENCH_LOAD (the
# load client, default $BENCH_BIN/mjpegd-load: it only counts, any build will do).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-15}
FRAMES=$(cd "${BENCH_FRAMES:-/work/shared/frames/720p}" && pwd)
PORT=${BENCH_PORT:-18490}
BIN=${BENCH_BIN:-target/release}
SERVER=$BIN/mjpegd
LOAD=${BENCH_LOAD:-$BIN/mjpegd-load}
[ -x "$SERVER" ] && [ -x "$LOAD" ] || { echo "build first: cargo build --release -p mjpegd -p mjpegd-load" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

# start N: an mjpegd on $PORT with N cameras showing the benchmark frames at 30 fps
start() {
    local n=$1 config=$WORK/mosaic.toml
    : >"$config"
    for i in $(seq "$n"); do
        printf '[[cameras]]\nname = "cam%02d"\nsource = "images:%s"\nfps = 30\nidle_timeout = 60\n' "$i" "$FRAMES" >>"$config"
    done
    MJPEGD_STATE_DIR=$WORK/state "$SERVER" --config "$config" --listen "127.0.0.1:$PORT" --public-state \
        >"$WORK/log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/api/state" && return 0
        sleep 0.1
    done
    echo "mjpegd did not start:" >&2; cat "$WORK/log" >&2; exit 1
}

field() { python3 -c "import json,sys; r=json.load(sys.stdin); v=$1; print(round(v, 1) if isinstance(v, float) else v)"; }

# run_case N VIEWERS FPS
run_case() {
    local n=$1 viewers=$2 rate=$3 json
    json=$("$LOAD" run --url "http://127.0.0.1:$PORT/mosaic?width=1280&fps=$rate" --viewers "$viewers" \
        --duration "$DURATION" --pid "$PID" --json --label "mosaic of $n")
    local cpu fps rss
    cpu=$(echo "$json" | field "r['server']['cpu_percent']")
    fps=$(echo "$json" | field "r['fps']['median']")
    rss=$(echo "$json" | field "r['server']['peak_rss_mb']")
    echo "| $n cameras at $rate fps | $viewers | $cpu | $fps | $rss |"
}

echo "Mosaic 1280 wide of 720p cameras at 30 fps ($DURATION s per case, $(basename "$BIN") build):"
echo
echo "| mosaic | viewers | server CPU % | median fps per viewer | server peak RSS MB |"
echo "|---|---|---|---|---|"
for n in 4 12; do
    for case in "1 0.2" "1 10" "50 10"; do
        read -r v rate <<<"$case"
        start "$n"
        # The inputs' first frames: the mosaic's own start is not what is measured.
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/mosaic.jpg?width=1280&fps=$rate"
        run_case "$n" "$v" "$rate"
        stop
    done
done
