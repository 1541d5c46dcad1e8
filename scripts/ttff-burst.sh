#!/usr/bin/env bash
# scripts/ttff-burst.sh SERVER PORT LABEL: time to first frame with 1000 viewers opened at once.
#
# Starts SERVER (an mjpegd binary, pinned to core 0) on 127.0.0.1:PORT playing the benchmark
# frames at 30 fps, opens 1000 viewers at once with mjpegd-load (core 1, --connect-concurrency
# 1000) for 10 s and prints the load client's JSON report (ttff_ms has min/median/max). Compare
# `nstat -az TcpExtListenOverflows` before and after a run to see listen-backlog overflows.
#
# Environment: BENCH_FRAMES (default ../shared/frames/720p), BENCH_LOAD (the mjpegd-load binary,
# default target/release/mjpegd-load). Logs go to target/bench/LABEL.server.log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVER=$1; PORT=$2; LABEL=$3
FRAMES=${BENCH_FRAMES:-$ROOT/../shared/frames/720p}
LOAD=${BENCH_LOAD:-$ROOT/target/release/mjpegd-load}
mkdir -p "$ROOT/target/bench"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
taskset -c 0 "$SERVER" --source "images:$FRAMES" --fps 30 --max-viewers 5000 --max-viewers-per-camera 5000 --max-connections-per-ip 5000 --send-timeout 10 --listen "127.0.0.1:$PORT" >"$ROOT/target/bench/$LABEL.server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
taskset -c 1 "$LOAD" run --url "http://127.0.0.1:$PORT/stream" --pid "$PID" --json --label "$LABEL" --viewers 1000 --connect-concurrency 1000 --duration 10
