#!/usr/bin/env bash
# What HTTP/2 costs the server against HTTP/1.1, both over TLS, at the same number of viewers:
#   h1      HTTP/1.1, one connection per viewer
#   h2x1    HTTP/2, one stream per connection (as many connections as h1)
#   h2xN    HTTP/2, N streams per connection (a dashboard: every camera over one connection)
#   h2xNbig h2xN with the client allowing DATA frames of H2_BIG_FRAME bytes instead of 16 KiB
#           (not a browser's setting: a diagnostic of the per-frame cost; not run by default)
# mjpegd (images source, 720p, 30 fps, --tls-cert/--tls-key) restarted for every run, the cases
# interleaved and repeated so that a busy (shared) machine affects them alike. Reports server CPU
# seconds per delivered GB (user and system apart), delivered fps per viewer and peak RSS.
#
# Builds nothing: cargo build --release -p mjpegd -p mjpegd-load
# The certificate is self-signed, made with openssl, or, without it, by
#   cargo build --release -p mjpegd-load --example self_signed
#
# Environment:
#   H2_VIEWERS     viewers per run (default 200)
#   H2_STREAMS     streams per connection of the multiplexed case (default 12)
#   H2_CASES       which cases, in order (default "h1 h2x1 h2xN")
#   H2_BIG_FRAME   SETTINGS_MAX_FRAME_SIZE of h2xNbig (default 1048576: a whole 720p frame)
#   H2_REPEAT      rounds of all cases (default 3)
#   H2_DURATION    seconds per run (default 10)
#   H2_FRAMES      directory of JPEG frames (default ../shared/frames/720p)
#   H2_PORT        first TCP port (default 19280)
#   H2_RESULTS     raw JSON reports, logs, certificate (default target/bench-h2)
#   H2_SERVER_CPU / H2_CLIENT_CPU  cores to pin to (default 0 and 1)
#   H2_MJPEGD_ARGS extra mjpegd arguments
#   H2_SERVER_BIN  the mjpegd binary (default target/release/mjpegd)
#   H2_LOAD_BIN    the mjpegd-load binary (default target/release/mjpegd-load)
#   H2_PERF        if set (e.g. "cpu-clock"), `perf record -e $H2_PERF -g` the server during the
#                  first round of each case; perf.data in H2_RESULTS (needs a profiling build
#                  for symbols: cargo build --profile profiling, H2_SERVER_BIN=...)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VIEWERS=${H2_VIEWERS:-200}
STREAMS=${H2_STREAMS:-12}
CASES=${H2_CASES:-"h1 h2x1 h2xN"}
REPEAT=${H2_REPEAT:-3}
DURATION=${H2_DURATION:-10}
DEFAULT_FRAMES=$ROOT/../shared/frames/720p
# A git worktree sits one level deeper than the main checkout.
[ -d "$DEFAULT_FRAMES" ] || DEFAULT_FRAMES=$ROOT/../../shared/frames/720p
FRAMES=$(cd "${H2_FRAMES:-$DEFAULT_FRAMES}" && pwd)
PORT=${H2_PORT:-19280}
RESULTS=${H2_RESULTS:-$ROOT/target/bench-h2}
SERVER_CPU=${H2_SERVER_CPU:-0}
CLIENT_CPU=${H2_CLIENT_CPU:-1}
read -r -a EXTRA <<<"${H2_MJPEGD_ARGS:-}"
SERVER=${H2_SERVER_BIN:-target/release/mjpegd}
LOAD=${H2_LOAD_BIN:-target/release/mjpegd-load}
PERF=${H2_PERF:-}
BIG_FRAME=${H2_BIG_FRAME:-1048576}

die() { echo "bench-h2: $*" >&2; exit 1; }
find "$FRAMES" -maxdepth 1 -name '*.jpg' | grep -q . || die "no .jpg files in $FRAMES"
[ -x "$SERVER" ] && [ -x "$LOAD" ] || die "build first: cargo build --release -p mjpegd -p mjpegd-load"
command -v jq >/dev/null || die "needs jq"
command -v taskset >/dev/null || die "needs taskset (util-linux)"
[ -z "$PERF" ] || command -v perf >/dev/null || die "H2_PERF needs perf (apt-get install linux-perf)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$RESULTS"

# A self-signed certificate for localhost and 127.0.0.1, verified by the client with --ca: the
# handshake is the real one, and only happens once per connection anyway. A server certificate,
# not openssl's default CA one, which webpki refuses as an end entity.
CERT=$RESULTS/cert.pem
KEY=$RESULTS/key.pem
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=digitalSignature" \
        -addext "extendedKeyUsage=serverAuth" -keyout "$KEY" -out "$CERT" 2>/dev/null
elif [ -x target/release/examples/self_signed ]; then
    target/release/examples/self_signed "$RESULTS" >/dev/null
else
    die "needs openssl, or: cargo build --release -p mjpegd-load --example self_signed"
fi

SERVER_PID=
PERF_PID=
cleanup() {
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
    fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# utime and stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12, $13 }' "/proc/$1/stat"
}

# The load client's flags for a case.
case_args() {
    case $1 in
        h1) ;;
        h2x1) echo --http2 ;;
        h2xN) echo --http2 --streams-per-connection "$STREAMS" ;;
        h2xNbig) echo --http2 --streams-per-connection "$STREAMS" --h2-max-frame-size "$BIG_FRAME" ;;
        *) die "unknown case $1 (h1, h2x1, h2xN, h2xNbig)" ;;
    esac
}

# run NAME CASE PERF?: serves over TLS, loads, stops; the report lands in $RESULTS/NAME.json.
run() {
    local name=$1 kind=$2 profile=$3
    PORT=$((PORT + 1))
    taskset -c "$SERVER_CPU" "$SERVER" --listen "127.0.0.1:$PORT" --tls-cert "$CERT" --tls-key "$KEY" \
        --source "images:$FRAMES" --fps 30 --max-viewers 5000 --max-viewers-per-camera 5000 \
        --max-connections-per-ip 5000 --send-timeout 10 "${EXTRA[@]}" >"$RESULTS/$name.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "$name: server exited: $(tail -n 5 "$RESULTS/$name.log")"
        sleep 0.1
    done
    if [ "$profile" = yes ]; then
        perf record -q -e "$PERF" -g -p "$SERVER_PID" -o "$RESULTS/$name.perf.data" \
            >/dev/null 2>&1 &
        PERF_PID=$!
    fi
    local before
    before=$(cpu_ticks "$SERVER_PID")
    # shellcheck disable=SC2046 # the case's flags are words
    taskset -c "$CLIENT_CPU" "$LOAD" run --url "https://127.0.0.1:$PORT/stream" --ca "$CERT" \
        $(case_args "$kind") --pid "$SERVER_PID" --json --label "$name" --viewers "$VIEWERS" \
        --duration "$DURATION" >"$RESULTS/$name.json"
    echo "$before $(cpu_ticks "$SERVER_PID")" >"$RESULTS/$name.ticks"
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=
    fi
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    sleep 1
}

# One tab-separated row for a run: server CPU s/GB (all, user, system), fps median and min,
# server and client CPU %, peak RSS, connections, errors, invalid parts.
row() {
    local hz u0 s0 u1 s1
    hz=$(getconf CLK_TCK)
    read -r u0 s0 u1 s1 <"$1.ticks"
    jq -r --argjson u "$((u1 - u0))" --argjson s "$((s1 - s0))" --argjson hz "$hz" '
        (.bytes / 1e9) as $gb |
        [.label, .connections,
         (.server.cpu_percent / 100 * .duration_s / $gb), ($u / $hz / $gb), ($s / $hz / $gb),
         .fps.median, .fps.min, .server.cpu_percent, .client_cpu_percent, .server.peak_rss_mb,
         .mbytes_per_s,
         (.errors.connect + .errors.http_status + .errors.disconnected + .errors.protocol),
         .invalid_parts]
        | map(if type == "number" and . != floor then (. * 1000 | round / 1000) else . end)
        | @tsv' "$1.json"
}

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $VIEWERS viewers over TLS, ${DURATION} s per run, $REPEAT rounds"
    echo "# server $SERVER on core $SERVER_CPU, client $LOAD on core $CLIENT_CPU"
    printf 'run\tconnections\tcpu-s/GB\tuser-s/GB\tsys-s/GB\tfps median\tfps min\tserver cpu %%\tclient cpu %%\tpeak RSS MB\tMB/s\terrors\tinvalid\n'
} | tee "$RESULTS/summary.tsv"
for r in $(seq 1 "$REPEAT"); do
    for c in $CASES; do
        profile=no
        [ -n "$PERF" ] && [ "$r" = 1 ] && profile=yes
        run "$c-$r" "$c" "$profile"
        row "$RESULTS/$c-$r" | tee -a "$RESULTS/summary.tsv"
    done
done

# Medians over the rounds, and each case's CPU per GB against HTTP/1.1's.
echo
printf 'case\tcpu-s/GB median\tvs h1\tuser-s/GB median\tfps median\tpeak RSS MB median\n'
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { grep -P "^$1-[0-9]+\t" "$RESULTS/summary.tsv" | cut -f "$2" | median; }
h1=$(col h1 3 2>/dev/null || true)
for c in $CASES; do
    cpu=$(col "$c" 3)
    vs=-
    [ -n "$h1" ] && [ "$h1" != 0 ] && vs=$(echo "scale=3; $cpu / $h1" | bc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$cpu" "$vs" "$(col "$c" 4)" "$(col "$c" 6)" "$(col "$c" 10)"
done
