#!/usr/bin/env bash
# Benchmarks mjpegd with mjpegd-load and writes BENCHMARKS.md.
#
# For each viewer count, mjpegd (pinned to one core) is measured and then the zero-work
# "ceiling" server under the same load, so the table shows how close mjpegd gets to what the
# machine allows. Also: readers alongside stalled viewers (the send timeout must cut the
# stalled ones), and an idle server's CPU after its capture has stopped.
#
# Environment:
#   BENCH_DURATION  seconds per case (default 15; the stalled case runs at least 20)
#   BENCH_CASES     cases to run (default "1 100 500 1000 2000 stalled idle");
#                   numbers are viewer counts
#   BENCH_FRAMES    directory of JPEG frames (default ../shared/frames/720p)
#   BENCH_PORT      first TCP port to use (default 18080; each server gets the next one)
#   BENCH_OUT       the markdown file written (default BENCHMARKS.md)
#   BENCH_RESULTS   raw JSON reports and server logs (default target/bench)
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  cores to pin to (default 0 and 1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-15}
CASES=${BENCH_CASES:-"1 100 500 1000 2000 stalled idle"}
FRAMES=$(cd "${BENCH_FRAMES:-$ROOT/../shared/frames/720p}" && pwd)
FRAME=$(find "$FRAMES" -maxdepth 1 -name '*.jpg' | sort | head -n 1)
PORT=${BENCH_PORT:-18080}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
RESULTS=${BENCH_RESULTS:-$ROOT/target/bench}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
STALLED_DURATION=$((DURATION > 20 ? DURATION : 20))
IDLE_TIMEOUT=2

SERVER=target/release/mjpegd
LOAD=target/release/mjpegd-load

die() { echo "bench: $*" >&2; exit 1; }

[ -n "$FRAME" ] || die "no .jpg files in $FRAMES"
[[ "$DURATION" =~ ^[0-9]+$ ]] || die "BENCH_DURATION must be whole seconds"
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: warning: fewer than 2 cores; server and client share core 0" >&2
    SERVER_CPU=0
    CLIENT_CPU=0
fi

# Thousands of sockets per process; take what the hard limit allows if 65536 is refused.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "bench: building release binaries" >&2
cargo build --release -p mjpegd -p mjpegd-load >&2

mkdir -p "$RESULTS"
COMMANDS=()
ROWS=()
SERVER_PID=

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Records a command for BENCHMARKS.md (paths relative to the repository) and prints it.
record() {
    local line
    line=$(printf '%q ' "$@")
    line=${line//"$ROOT/"/}
    COMMANDS+=("${line% }")
    echo "bench: \$ ${line% }" >&2
}

# start_server NAME COMMAND...: starts a server on the server core and waits until it listens.
start_server() {
    local name=$1
    shift
    PORT=$((PORT + 1))
    local cmd=("$@" --listen "127.0.0.1:$PORT")
    record taskset -c "$SERVER_CPU" "${cmd[@]}"
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$RESULTS/$name.server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            SERVER_PID=
            echo "bench: $name: server exited; log:" >&2
            tail -n 20 "$RESULTS/$name.server.log" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench: $name: server did not listen on port $PORT within 10 s" >&2
    stop_server
    return 1
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    # Let the last connections' teardown settle before the next measurement.
    sleep 1
}

MJPEGD=("$SERVER" --source "images:$FRAMES" --fps 30 --max-viewers 5000 --max-viewers-per-camera 5000 --max-connections-per-ip 5000 --send-timeout 10)
CEILING=("$LOAD" ceiling --frame "$FRAME" --fps 30)

# load NAME ARGS...: runs the load client on the client core against the current server,
# saving its JSON report as $RESULTS/NAME.json.
load() {
    local name=$1
    shift
    local cmd=("$LOAD" run --url "http://127.0.0.1:$PORT/stream" --pid "$SERVER_PID" --json
        --label "$name" "$@")
    record taskset -c "$CLIENT_CPU" "${cmd[@]}"
    if ! taskset -c "$CLIENT_CPU" "${cmd[@]}" >"$RESULTS/$name.json"; then
        echo "bench: $name: load client failed" >&2
        return 1
    fi
    print_summary "$RESULTS/$name.json"
}

print_summary() {
    "$LOAD" row --report "$1" >&2
}

row() {
    local label=$1 report=$2 ceiling=${3:-}
    if [ -n "$ceiling" ] && [ -f "$ceiling" ]; then
        ROWS+=("$("$LOAD" row --label "$label" --report "$report" --ceiling "$ceiling")")
    else
        ROWS+=("$("$LOAD" row --label "$label" --report "$report")")
    fi
}

failed_row() {
    ROWS+=("| $1 | failed: see $RESULTS | | | | | | | | | |")
}

viewers_case() {
    local n=$1
    local ok=1
    local who="$n viewers"
    [ "$n" = 1 ] && who="1 viewer"
    if start_server "mjpegd-$n" "${MJPEGD[@]}"; then
        load "mjpegd-$n" --viewers "$n" --duration "$DURATION" || ok=0
        stop_server
    else
        ok=0
    fi
    if start_server "ceiling-$n" "${CEILING[@]}"; then
        load "ceiling-$n" --viewers "$n" --duration "$DURATION" || rm -f "$RESULTS/ceiling-$n.json"
        stop_server
    fi
    if [ "$ok" = 1 ]; then
        row "mjpegd, $who" "$RESULTS/mjpegd-$n.json" "$RESULTS/ceiling-$n.json"
    else
        failed_row "mjpegd, $who"
    fi
    if [ -f "$RESULTS/ceiling-$n.json" ]; then
        row "ceiling, $who" "$RESULTS/ceiling-$n.json"
    else
        failed_row "ceiling, $who"
    fi
}

stalled_case() {
    if start_server mjpegd-stalled "${MJPEGD[@]}" &&
        load mjpegd-stalled --viewers 800 --stalled 200 --duration "$STALLED_DURATION"; then
        stop_server
        row "mjpegd, 800 reading + 200 stalled" "$RESULTS/mjpegd-stalled.json" \
            "$RESULTS/ceiling-1000.json"
    else
        stop_server
        failed_row "mjpegd, 800 reading + 200 stalled"
    fi
}

idle_case() {
    if start_server mjpegd-idle "${MJPEGD[@]}" --idle-timeout "$IDLE_TIMEOUT" &&
        load mjpegd-idle-warmup --viewers 1 --duration 2; then
        record sleep $((IDLE_TIMEOUT + 3))
        sleep $((IDLE_TIMEOUT + 3))
        local cmd=("$LOAD" cpu --pid "$SERVER_PID" --duration 5 --json --label mjpegd-idle)
        record taskset -c "$CLIENT_CPU" "${cmd[@]}"
        if taskset -c "$CLIENT_CPU" "${cmd[@]}" >"$RESULTS/mjpegd-idle.json"; then
            row "mjpegd idle, ${IDLE_TIMEOUT}+3 s after the last viewer left" \
                "$RESULTS/mjpegd-idle.json"
        else
            failed_row "mjpegd idle"
        fi
        stop_server
    else
        stop_server
        failed_row "mjpegd idle"
    fi
}

for case in $CASES; do
    echo "bench: === case $case ===" >&2
    case $case in
    stalled) stalled_case ;;
    idle) idle_case ;;
    *[!0-9]* | '') die "unknown case '$case' (use viewer counts, 'stalled' or 'idle')" ;;
    *) viewers_case "$case" ;;
    esac
done

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
    echo "# Benchmarks"
    echo
    echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); raw JSON reports"
    echo "and server logs in \`${RESULTS#"$ROOT/"}/\`."
    echo
    echo "## Machine"
    echo
    echo "- CPU: ${cpu_model:-unknown}, $(nproc) cores"
    echo "- Kernel: $(uname -sr)"
    echo "- Rust: $(rustc --version)"
    echo "- Server pinned to core $SERVER_CPU, load client to core $CLIENT_CPU (\`taskset\`);"
    echo "  open file limit $(ulimit -n)"
    echo
    echo "## Method"
    echo
    echo "- Frames: the $(find "$FRAMES" -maxdepth 1 -name '*.jpg' | wc -l) JPEGs of"
    echo "  \`${FRAMES#"$(dirname "$ROOT")/"}\` (\`$(basename "$FRAME")\`: $(stat -c %s "$FRAME") bytes) at 30 fps,"
    echo "  ${DURATION} s per case (stalled case ${STALLED_DURATION} s)."
    echo "- *ceiling* is \`mjpegd-load ceiling\`: one prebuilt part written to every connection"
    echo "  per tick, no other work; the best this machine, kernel and client allow."
    echo "- fps: per viewer, frames after the first over the time since the first; median / min"
    echo "  over viewers. MB/s: all bytes received over the run (10^6 B)."
    echo "- latency: receive time minus the part's \`X-Timestamp\` (capture wall time), every frame."
    echo "  TTFF: connect to first complete frame (includes starting capture for the first viewer)."
    echo "- server CPU %: utime+stime from /proc over the run, 100 = one core. Peak RSS: VmHWM."
    echo "  client CPU %: the load client's own (near 100 would mean the client limits the result)."
    echo "- invalid / errors: parts failing validation / viewers failing (connect, non-200,"
    echo "  disconnect, protocol). Stalled viewers (4 KiB receive buffer, never read) must be"
    echo "  cut by the server's send timeout; \"stalled cut\" counts those the server closed."
    echo "- fps vs ceiling: median fps over the ceiling's median fps under the same load (the"
    echo "  stalled case compares with the ceiling at 1000 viewers)."
    echo
    echo "## Results"
    echo
    "$LOAD" row --header
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "## Commands"
    echo
    echo '```sh'
    echo "ulimit -n $(ulimit -n)"
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
} >"$OUT"
echo "bench: wrote $OUT" >&2
