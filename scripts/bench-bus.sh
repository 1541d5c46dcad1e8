#!/usr/bin/env bash
# Benchmarks the NATS bus: one camera node publishing the 720p benchmark frames at 30 fps, one
# nats-server and one edge on loopback. For each viewer count, viewers of the camera node
# itself ("direct") and of the edge ("edge") are measured back to back: fps and latency from
# X-Timestamp (mjpegd-load), and the CPU seconds each process consumed (utime + stime from
# /proc/PID/stat, which a shared machine inflates less than wall-clock percentages).
# Prints a markdown table; raw JSON reports go to $BENCH_RESULTS.
#
# Environment:
#   BENCH_DURATION  seconds per case (default 10)
#   BENCH_VIEWERS   viewer counts (default "1 50 200")
#   BENCH_FRAMES    directory of JPEG frames (default ../shared/frames/720p)
#   BENCH_PORT      first TCP port (default 19080; uses the next three)
#   BENCH_RESULTS   raw reports and logs (default target/bench-bus)
#   BENCH_BIN       directory of the mjpegd and mjpegd-load binaries (default target/release,
#                   built if missing)
# Needs nats-server and jq.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-10}
VIEWERS=${BENCH_VIEWERS:-"1 50 200"}
FRAMES=$(cd "${BENCH_FRAMES:-$ROOT/../shared/frames/720p}" && pwd)
PORT=${BENCH_PORT:-19080}
RESULTS=${BENCH_RESULTS:-$ROOT/target/bench-bus}
BIN=${BENCH_BIN:-$ROOT/target/release}

die() { echo "bench-bus: $*" >&2; exit 1; }
command -v nats-server >/dev/null || die "nats-server not found (scripts/install-test-deps.sh)"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
if [ ! -x "$BIN/mjpegd" ] || [ ! -x "$BIN/mjpegd-load" ]; then
    echo "bench-bus: building release binaries" >&2
    cargo build --release -p mjpegd -p mjpegd-load >&2
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$RESULTS"

NATS_PORT=$PORT
CAM_PORT=$((PORT + 1))
EDGE_PORT=$((PORT + 2))
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "nothing listens on port $1"
}

# CPU seconds (user + system) a process has used.
cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$RESULTS/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
wait_port "$NATS_PORT"

LIMITS=(--max-viewers 5000 --max-viewers-per-camera 5000 --max-connections-per-ip 5000)
"$BIN/mjpegd" --listen "127.0.0.1:$CAM_PORT" --source "images:$FRAMES" --fps 30 "${LIMITS[@]}" \
    --public-state --publish "nats://127.0.0.1:$NATS_PORT" >"$RESULTS/camera-node.log" 2>&1 &
CAM_PID=$!
PIDS+=("$CAM_PID")
"$BIN/mjpegd" --listen "127.0.0.1:$EDGE_PORT" "${LIMITS[@]}" --public-state \
    --cameras-from "nats://127.0.0.1:$NATS_PORT" >"$RESULTS/edge.log" 2>&1 &
EDGE_PID=$!
PIDS+=("$EDGE_PID")
wait_port "$CAM_PORT"
wait_port "$EDGE_PORT"
for i in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$EDGE_PORT/api/state" | jq -e '.cameras[] | select(.name == "default")' >/dev/null; then
        break
    fi
    [ "$i" -lt 100 ] || die "the edge did not discover the camera"
    sleep 0.1
done

echo "| path | viewers | fps median / min | latency p50 / p99 / max (ms) | edge CPU s/s | camera node CPU s/s | nats-server CPU s/s | bus drops |"
echo "|---|---:|---|---|---:|---:|---:|---:|"
for n in $VIEWERS; do
    for path in direct edge; do
        port=$CAM_PORT
        [ "$path" = edge ] && port=$EDGE_PORT
        # Let capture start (and, for the edge, demand reach the camera node) before measuring.
        "$BIN/mjpegd-load" run --url "http://127.0.0.1:$port/cameras/default/stream" --viewers 1 --duration 2 --json >/dev/null
        c0=$(cpu "$CAM_PID"); e0=$(cpu "$EDGE_PID"); n0=$(cpu "$NATS_PID"); t0=$(date +%s.%N)
        d0=$(curl -sf "http://127.0.0.1:$EDGE_PORT/api/state" | jq '.bus.cameras.default.dropped // 0')
        "$BIN/mjpegd-load" run --url "http://127.0.0.1:$port/cameras/default/stream" --viewers "$n" \
            --duration "$DURATION" --json --label "$path-$n" >"$RESULTS/$path-$n.json"
        c1=$(cpu "$CAM_PID"); e1=$(cpu "$EDGE_PID"); n1=$(cpu "$NATS_PID"); t1=$(date +%s.%N)
        d1=$(curl -sf "http://127.0.0.1:$EDGE_PORT/api/state" | jq '.bus.cameras.default.dropped // 0')
        per() { awk -v a="$1" -v b="$2" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", (b - a) / (t1 - t0) }'; }
        jq -r --arg path "$path" --arg n "$n" --arg e "$(per "$e0" "$e1")" --arg c "$(per "$c0" "$c1")" \
            --arg s "$(per "$n0" "$n1")" --arg d "$((d1 - d0))" '
            def ms: if . == null then "-" else (. * 10 | round / 10 | tostring) end;
            "| \($path) | \($n) | \(.fps.median * 10 | round / 10) / \(.fps.min * 10 | round / 10) | \(.latency_ms.p50 | ms) / \(.latency_ms.p99 | ms) / \(.latency_ms.max | ms) | \($e) | \($c) | \($s) | \($d) |"' \
            "$RESULTS/$path-$n.json"
    done
done
# Idle: no viewers anywhere; after the idle timeouts every process should be near zero.
sleep 16
c0=$(cpu "$CAM_PID"); e0=$(cpu "$EDGE_PID"); n0=$(cpu "$NATS_PID")
sleep 10
c1=$(cpu "$CAM_PID"); e1=$(cpu "$EDGE_PID"); n1=$(cpu "$NATS_PID")
awk -v c0="$c0" -v c1="$c1" -v e0="$e0" -v e1="$e1" -v n0="$n0" -v n1="$n1" \
    'BEGIN { printf "| idle (no viewers, 10 s) | 0 | - | - | %.3f | %.3f | %.3f | - |\n", (e1 - e0) / 10, (c1 - c0) / 10, (n1 - n0) / 10 }'
