#!/usr/bin/env bash
# Measures the send path's cost against the zero-work ceiling: CPU seconds per delivered GB and
# frames delivered, mjpegd and `mjpegd-load ceiling` run back to back under the same load,
# repeated, so that a busy (shared) machine affects both sides of each ratio alike.
#
# Environment:
#   SEND_VIEWERS   viewer counts (default "1000 1500")
#   SEND_REPEAT    pairs per viewer count (default 3)
#   SEND_DURATION  seconds per run (default 10)
#   SEND_FRAMES    directory of JPEG frames (default ../shared/frames/720p)
#   SEND_PORT      first TCP port (default 19080)
#   SEND_RESULTS   raw JSON reports (default target/send-cost)
#   SEND_SERVER_CPU / SEND_CLIENT_CPU  cores to pin to (default 0 and 1)
#   SEND_MJPEGD_ARGS  extra mjpegd arguments (e.g. "--rotate 90")
#   SEND_SERVER_BIN   the mjpegd binary (default target/release/mjpegd)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VIEWERS=${SEND_VIEWERS:-"1000 1500"}
REPEAT=${SEND_REPEAT:-3}
DURATION=${SEND_DURATION:-10}
DEFAULT_FRAMES=$ROOT/../shared/frames/720p
# A git worktree sits one level deeper than the main checkout.
[ -d "$DEFAULT_FRAMES" ] || DEFAULT_FRAMES=$ROOT/../../shared/frames/720p
FRAMES=$(cd "${SEND_FRAMES:-$DEFAULT_FRAMES}" && pwd)
FRAME=$(find "$FRAMES" -maxdepth 1 -name '*.jpg' | sort | head -n 1)
PORT=${SEND_PORT:-19080}
RESULTS=${SEND_RESULTS:-$ROOT/target/send-cost}
SERVER_CPU=${SEND_SERVER_CPU:-0}
CLIENT_CPU=${SEND_CLIENT_CPU:-1}
read -r -a EXTRA <<<"${SEND_MJPEGD_ARGS:-}"

SERVER=${SEND_SERVER_BIN:-target/release/mjpegd}
LOAD=target/release/mjpegd-load

die() { echo "send-cost: $*" >&2; exit 1; }
[ -n "$FRAME" ] || die "no .jpg files in $FRAMES"
[ -x "$SERVER" ] && [ -x "$LOAD" ] || die "build first: cargo build --release -p mjpegd -p mjpegd-load"
command -v jq >/dev/null || die "needs jq"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$RESULTS"

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# run NAME VIEWERS SERVER-COMMAND...: serves, loads, stops; the report lands in $RESULTS/NAME.json.
run() {
    local name=$1 n=$2
    shift 2
    PORT=$((PORT + 1))
    taskset -c "$SERVER_CPU" "$@" --listen "127.0.0.1:$PORT" >"$RESULTS/$name.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "$name: server exited: $(tail -n 5 "$RESULTS/$name.log")"
        sleep 0.1
    done
    local before
    before=$(cpu_ticks "$SERVER_PID")
    taskset -c "$CLIENT_CPU" "$LOAD" run --url "http://127.0.0.1:$PORT/stream" --pid "$SERVER_PID" \
        --json --label "$name" --viewers "$n" --duration "$DURATION" >"$RESULTS/$name.json"
    # User and system time apart: the kernel's share per byte is the same for both servers,
    # what differs is mostly user time.
    echo "$before $(cpu_ticks "$SERVER_PID")" >"$RESULTS/$name.ticks"
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    sleep 1
}

# utime and stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}

# User and system CPU seconds per GB delivered.
user_sys() {
    local hz
    hz=$(getconf CLK_TCK)
    read -r u0 s0 u1 s1 <"$1.ticks"
    jq -r --argjson u "$(( u1 - u0 ))" --argjson s "$(( s1 - s0 ))" --argjson hz "$hz" \
        '[($u / $hz / (.bytes / 1e9)), ($s / $hz / (.bytes / 1e9))] | @tsv' "$1.json"
}

# CPU seconds per GB delivered, frames delivered, errors.
summary() {
    jq -r '[(.server.cpu_percent / 100 * .duration_s / (.bytes / 1e9)), .frames, .fps.median,
        (.errors.connect + .errors.http_status + .errors.disconnected + .errors.protocol),
        .invalid_parts] | @tsv' "$1"
}

printf 'viewers\trun\tmjpegd cpu-s/GB\tceiling cpu-s/GB\tcpu ratio\tframes ratio\tmjpegd fps\tceiling fps\terrors m/c\tinvalid m/c\tuser-s/GB m/c\tsys-s/GB m/c\n'
for n in $VIEWERS; do
    for r in $(seq 1 "$REPEAT"); do
        run "mjpegd-$n-$r" "$n" "$SERVER" --source "images:$FRAMES" --fps 30 --max-viewers 5000 \
            --max-viewers-per-camera 5000 --max-connections-per-ip 5000 --send-timeout 10 "${EXTRA[@]}"
        run "ceiling-$n-$r" "$n" "$LOAD" ceiling --frame "$FRAME" --fps 30
        read -r mc mf mfps me mi < <(summary "$RESULTS/mjpegd-$n-$r.json")
        read -r cc cf cfps ce ci < <(summary "$RESULTS/ceiling-$n-$r.json")
        read -r mu ms < <(user_sys "$RESULTS/mjpegd-$n-$r")
        read -r cu cs < <(user_sys "$RESULTS/ceiling-$n-$r")
        printf '%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%s/%s\t%s/%s\t%.3f/%.3f\t%.3f/%.3f\n' \
            "$n" "$r" "$mc" "$cc" "$(echo "$mc / $cc" | bc -l)" "$(echo "$mf / $cf" | bc -l)" \
            "$mfps" "$cfps" "$me" "$ce" "$mi" "$ci" "$mu" "$cu" "$ms" "$cs"
    done
done
