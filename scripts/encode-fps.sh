#!/usr/bin/env bash
# Measures delivered fps of a camera whose every frame mjpegd must transform: the 720p benchmark
# frames at 60 fps with --rotate 90, one viewer, the server free to use every core. Prints the
# viewer's median fps, the server's CPU and what /api/state says it captured and dropped.
#
# Environment:
#   ENCODE_BIN       the mjpegd binary (default target/release/mjpegd)
#   ENCODE_ARGS      extra mjpegd arguments (e.g. "--encode-workers 1")
#   ENCODE_SOURCE    the source (default images:FRAMES; e.g. testpattern with ENCODE_ARGS="--size 1920x1080")
#   ENCODE_TRANSFORM the transform arguments (default "--rotate 90"; "" for none)
#   ENCODE_DURATION  seconds (default 15)
#   ENCODE_REPEAT    runs (default 2)
#   ENCODE_FRAMES    directory of JPEG frames (default ../shared/frames/720p)
#   ENCODE_PORT      TCP port (default 19700)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEFAULT_FRAMES=$ROOT/../shared/frames/720p
# A git worktree sits one level deeper than the main checkout.
[ -d "$DEFAULT_FRAMES" ] || DEFAULT_FRAMES=$ROOT/../../shared/frames/720p
FRAMES=$(cd "${ENCODE_FRAMES:-$DEFAULT_FRAMES}" && pwd)
BIN=${ENCODE_BIN:-target/release/mjpegd}
DURATION=${ENCODE_DURATION:-15}
REPEAT=${ENCODE_REPEAT:-2}
PORT=${ENCODE_PORT:-19700}
LOAD=target/release/mjpegd-load
read -r -a EXTRA <<<"${ENCODE_ARGS:-}"
SOURCE=${ENCODE_SOURCE:-images:$FRAMES}
read -r -a TRANSFORM <<<"${ENCODE_TRANSFORM---rotate 90}"
command -v jq >/dev/null || { echo "encode-fps: needs jq" >&2; exit 1; }

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

printf 'run\tfps median\tserver CPU %%\tcaptured\tdropped\n'
for r in $(seq 1 "$REPEAT"); do
    "$BIN" --source "$SOURCE" --fps 60 "${TRANSFORM[@]}" --listen "127.0.0.1:$PORT" "${EXTRA[@]}" \
        >/dev/null 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
    report=$("$LOAD" run --url "http://127.0.0.1:$PORT/stream" --viewers 1 --duration "$DURATION" \
        --pid "$SERVER_PID" --json)
    state=$(curl -s "http://127.0.0.1:$PORT/api/state")
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    printf '%s\t%.1f\t%.0f\t%s\t%s\n' "$r" "$(jq .fps.median <<<"$report")" \
        "$(jq .server.cpu_percent <<<"$report")" \
        "$(jq .cameras[0].frames_captured <<<"$state")" \
        "$(jq '.cameras[0].frames_dropped // "n/a"' <<<"$state")"
done
