#!/usr/bin/env bash
# Soak test: mjpegd under continuous churn for a long time, checking that nothing leaks.
#
# One mjpegd (the server under test) with three cameras:
#   pattern  testpattern (healthy: its viewers must never be disconnected)
#   exec     an exec: ffmpeg source whose process group is SIGKILLed every SOAK_RESTART_EVERY s
#   relay    an http: relay of a second mjpegd (the upstream), which is SIGKILLed every
#            SOAK_FLAP_EVERY s and restarted SOAK_FLAP_DOWN s later
# Load: SOAK_VIEWERS viewers of `pattern` joining and leaving continuously (each stays a random
# 0.5-1.5 x SOAK_CHURN s, then reconnects), a tenth as many on `exec` and on `relay`, a snapshot
# of every camera and an /api/state poll every second. The server's RSS, open descriptors and
# threads are sampled every 10 s into $SOAK_RESULTS/samples.csv.
#
# Pass (computed and printed at the end; exit status 1 if any fails):
#   - RSS trend after SOAK_WARMUP s: least-squares slope within +-SOAK_MAX_SLOPE KB/min
#   - descriptors and threads back to their pre-load baseline within 90 s of the load ending
#   - no viewer of the healthy camera disconnected, no invalid part, every snapshot of it and
#     every /api/state poll answered 200
#   - every killed exec source restarted (a new child process appeared)
#
# Environment:
#   SOAK_DURATION      seconds of load (default 1800; try 120 first)
#   SOAK_WARMUP        seconds excluded from the RSS trend (default 300, at most a third of the run)
#   SOAK_MAX_SLOPE     RSS slope bound, KB/min (default 64)
#   SOAK_VIEWERS       viewers of the healthy camera (default 200)
#   SOAK_CHURN         mean viewer session length, seconds (default 20)
#   SOAK_RESTART_EVERY seconds between exec source kills (default 60)
#   SOAK_FLAP_EVERY    seconds between upstream kills (default 90)
#   SOAK_FLAP_DOWN     seconds the upstream stays down (default 15)
#   SOAK_PORT          server port; the upstream uses the next one (default 18960)
#   SOAK_RESULTS       output directory (default target/soak)
#   SOAK_NO_BUILD=1    use the existing release binaries
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${SOAK_DURATION:-1800}
WARMUP=${SOAK_WARMUP:-300}
MAX_SLOPE=${SOAK_MAX_SLOPE:-64}
VIEWERS=${SOAK_VIEWERS:-200}
CHURN=${SOAK_CHURN:-20}
RESTART_EVERY=${SOAK_RESTART_EVERY:-60}
FLAP_EVERY=${SOAK_FLAP_EVERY:-90}
FLAP_DOWN=${SOAK_FLAP_DOWN:-15}
PORT=${SOAK_PORT:-18960}
UPORT=$((PORT + 1))
RESULTS=${SOAK_RESULTS:-$ROOT/target/soak}
SIDE=$(((VIEWERS + 9) / 10))
SAMPLE_EVERY=10
SETTLE=90

SERVER=target/release/mjpegd
LOAD=target/release/mjpegd-load

die() {
    echo "soak: $*" >&2
    exit 2
}
log() { echo "soak: [$(date -u +%H:%M:%S)] $*" >&2; }

for v in DURATION WARMUP VIEWERS CHURN RESTART_EVERY FLAP_EVERY FLAP_DOWN PORT; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "SOAK_$v must be a whole number (got ${!v})"
done
[ "$DURATION" -ge 60 ] || die "SOAK_DURATION must be at least 60 s"
[ "$WARMUP" -le $((DURATION / 3)) ] || WARMUP=$((DURATION / 3))
[ "$FLAP_DOWN" -lt "$FLAP_EVERY" ] || die "SOAK_FLAP_DOWN must be shorter than SOAK_FLAP_EVERY"
command -v ffmpeg >/dev/null || die "ffmpeg is needed (scripts/install-test-deps.sh)"
command -v curl >/dev/null || die "curl is needed"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -z "${SOAK_NO_BUILD:-}" ]; then
    log "building release binaries"
    nice -n 10 cargo build --release --locked -p mjpegd -p mjpegd-load >&2
fi
[ -x "$SERVER" ] && [ -x "$LOAD" ] || die "no release binaries in target/release"

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
STOP=$RESULTS/stop

SERVER_PID=
UPSTREAM_PID=
HELPERS=()
CHILDREN_SEEN=$RESULTS/children-seen

# The exec camera's processes: every descendant of the server.
descendants() {
    local pid=$1 kids k
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    for k in $kids; do
        echo "$k"
        descendants "$k"
    done
}

cleanup() {
    set +e
    touch "$STOP"
    for p in "${HELPERS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${HELPERS[@]}"; do
        wait "$p" 2>/dev/null
    done
    local kids=
    if [ -n "$SERVER_PID" ]; then
        kids=$(descendants "$SERVER_PID")
        kill -TERM "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    # The flapper restarts the upstream in its own subshell and writes down each new id.
    local up
    for up in $UPSTREAM_PID $(cat "$RESULTS/upstream.pid" 2>/dev/null); do
        kill -TERM "$up" 2>/dev/null
        wait "$up" 2>/dev/null
    done
    rm -f "$RESULTS/upstream.pid"
    # Children the server should have ended itself: report, then end them by id.
    for k in $kids; do
        if kill -0 "$k" 2>/dev/null; then
            echo "soak: exec child $k outlived the server; killing it" >&2
            kill -KILL "$k" 2>/dev/null
        fi
    done
    rm -f "$STOP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sleeps up to $1 seconds in 1 s steps; fails as soon as the stop flag is set.
nap() {
    local i
    for ((i = 0; i < $1; i++)); do
        [ -e "$STOP" ] && return 1
        sleep 1
    done
    [ ! -e "$STOP" ]
}

# port_free PORT: nothing answers there (else another server would be measured).
port_free() {
    ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"
}

# wait_listening PORT PID: until something accepts on PORT (the process must stay alive).
wait_listening() {
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$2" 2>/dev/null || die "process $2 exited before listening on $1"
        if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/api/state"; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listening on port $1 after 10 s"
}

start_upstream() {
    port_free "$UPORT" || die "port $UPORT is taken (set SOAK_PORT)"
    nice -n 5 "$SERVER" --listen "127.0.0.1:$UPORT" --source testpattern --size 320x240 --fps 10 \
        >>"$RESULTS/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    wait_listening "$UPORT" "$UPSTREAM_PID"
}

cat >"$RESULTS/soak.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
max_connections_per_ip = 2000
snapshot_rate = 1000
public_state = true

[[cameras]]
name = "pattern"
source = "testpattern"
size = "320x240"
fps = 15
idle_timeout = 5

[[cameras]]
name = "exec"
source = "exec:ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=320x240:rate=10 -f mjpeg -q:v 5 -"
idle_timeout = 5
source_timeout = 3

[[cameras]]
name = "relay"
source = "http://127.0.0.1:$UPORT/stream"
idle_timeout = 5
source_timeout = 3
EOF

port_free "$PORT" || die "port $PORT is taken (set SOAK_PORT)"
start_upstream
"$SERVER" --config "$RESULTS/soak.toml" >"$RESULTS/server.log" 2>&1 &
SERVER_PID=$!
wait_listening "$PORT" "$SERVER_PID"
log "server $SERVER_PID on :$PORT, upstream $UPSTREAM_PID on :$UPORT; results in $RESULTS"

# proc_sample: "rss_kb fds threads" of the server.
proc_sample() {
    local rss threads fds
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$SERVER_PID"/status)
    threads=$(awk '/^Threads:/ {print $2}' /proc/"$SERVER_PID"/status)
    fds=$(find /proc/"$SERVER_PID"/fd -mindepth 1 -maxdepth 1 | wc -l)
    echo "$rss $fds $threads"
}

# Warm-up: one snapshot of each camera starts every capture once, so one-time state (the capture
# thread and its runtime, created on first use) is in the baseline; then capture idles again.
for cam in pattern exec relay; do
    curl -s -o /dev/null --max-time 10 "http://127.0.0.1:$PORT/cameras/$cam/snapshot.jpg" || true
done
log "warm-up snapshots taken; waiting for capture to idle (5 s) and spare threads to expire (10 s)"
sleep 20
read -r _ BASE_FDS BASE_THREADS < <(proc_sample)
log "baseline before load: $BASE_FDS descriptors, $BASE_THREADS threads"

T0=$(date +%s)
echo "t_s,rss_kb,fds,threads" >"$RESULTS/samples.csv"
(
    while [ ! -e "$STOP" ] && kill -0 "$SERVER_PID" 2>/dev/null; do
        read -r rss fds threads < <(proc_sample) || break
        echo "$(($(date +%s) - T0)),$rss,$fds,$threads" >>"$RESULTS/samples.csv"
        nap "$SAMPLE_EVERY" || break
    done
) &
HELPERS+=($!)

URL=http://127.0.0.1:$PORT
run_load() {
    local name=$1 viewers=$2
    # exec: the job's id is the client's own, so cleanup can end it.
    exec "$LOAD" run --url "$URL/cameras/$name/stream" --viewers "$viewers" --churn "$CHURN" \
        --duration "$DURATION" --ramp 10 --json --label "soak $name" \
        >"$RESULTS/load-$name.json" 2>"$RESULTS/load-$name.log"
}
run_load pattern "$VIEWERS" &
LOAD_PATTERN=$!
run_load exec "$SIDE" &
LOAD_EXEC=$!
run_load relay "$SIDE" &
LOAD_RELAY=$!
HELPERS+=("$LOAD_PATTERN" "$LOAD_EXEC" "$LOAD_RELAY")

# Snapshots of every camera and /api/state, once a second; one line per request.
(
    while nap 1; do
        for path in cameras/pattern/snapshot.jpg cameras/exec/snapshot.jpg \
            cameras/relay/snapshot.jpg api/state; do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/$path" || true)
            echo "$path $code" >>"$RESULTS/polls.txt"
        done
    done
) &
HELPERS+=($!)

# The exec source's process group is killed every RESTART_EVERY s; it must come back.
(
    while nap "$RESTART_EVERY"; do
        kids=$(descendants "$SERVER_PID")
        if [ -z "$kids" ]; then
            echo "no-child" >>"$RESULTS/restarts.txt"
            continue
        fi
        for k in $kids; do
            echo "$k" >>"$CHILDREN_SEEN"
        done
        kill -KILL $kids 2>/dev/null || true
        back=no
        for ((i = 0; i < 30; i++)); do
            nap 1 || break
            now=$(descendants "$SERVER_PID")
            if [ -n "$now" ] && ! grep -qxF -f <(echo "$kids") <<<"$now"; then
                back=$((i + 1))
                break
            fi
        done
        echo "killed $(echo $kids) restarted-after-s $back" >>"$RESULTS/restarts.txt"
    done
) &
HELPERS+=($!)

# The relay's upstream: killed every FLAP_EVERY s, back FLAP_DOWN s later.
(
    pid=$UPSTREAM_PID
    while nap $((FLAP_EVERY - FLAP_DOWN)); do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "down $(($(date +%s) - T0))" >>"$RESULTS/flaps.txt"
        nap "$FLAP_DOWN" || break
        start_upstream
        pid=$UPSTREAM_PID
        echo "$pid" >"$RESULTS/upstream.pid"
        echo "up $(($(date +%s) - T0))" >>"$RESULTS/flaps.txt"
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
) &
FLAPPER=$!
HELPERS+=("$FLAPPER")

log "load running for $DURATION s ($VIEWERS + 2 x $SIDE churning viewers)"
LOAD_OK=yes
for p in "$LOAD_PATTERN" "$LOAD_EXEC" "$LOAD_RELAY"; do
    wait "$p" || LOAD_OK=no
done
T_END=$(($(date +%s) - T0))
kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the soak (see $RESULTS/server.log)"
log "load over at t=$T_END s; stopping the restarts and polls"
touch "$STOP"
wait "$FLAPPER" 2>/dev/null || true
for p in "${HELPERS[@]}"; do
    wait "$p" 2>/dev/null || true
done
HELPERS=()
# The flapper ran in a subshell: the upstream it last started was ended by it.
UPSTREAM_PID=
rm -f "$STOP"

# Descriptors and threads must come back once capture idles (idle_timeout 5 s) and the
# blocking pool's spare threads expire (10 s).
END_FDS=
END_THREADS=
for ((i = 0; i < SETTLE; i++)); do
    read -r _ END_FDS END_THREADS < <(proc_sample)
    if [ "$END_FDS" -le "$BASE_FDS" ] && [ "$END_THREADS" -le "$BASE_THREADS" ]; then
        break
    fi
    sleep 1
done
SETTLED_AFTER=$i

# --- verdicts ---
FAILED=0
verdict() { # verdict OK|FAIL TEXT
    printf 'soak: %-4s %s\n' "$1" "$2"
    [ "$1" = OK ] || FAILED=1
}

SLOPE=$(awk -F, -v w="$WARMUP" -v e="$T_END" '
    NR > 1 && $1 >= w && $1 <= e { n++; x = $1 / 60; y = $2; sx += x; sy += y; sxx += x * x; sxy += x * y }
    END {
        d = n * sxx - sx * sx
        if (n < 3 || d == 0) { print "nan"; exit }
        printf "%.1f", (n * sxy - sx * sy) / d
    }' "$RESULTS/samples.csv")
RSS_RANGE=$(awk -F, -v w="$WARMUP" -v e="$T_END" '
    NR > 1 && $1 >= w && $1 <= e { if (!n++ || $2 < lo) lo = $2; if ($2 > hi) hi = $2 }
    END { printf "%.1f-%.1f MiB over %d samples", lo / 1024, hi / 1024, n }' "$RESULTS/samples.csv")
if [ "$SLOPE" != nan ] && awk -v s="$SLOPE" -v m="$MAX_SLOPE" 'BEGIN { exit !(s <= m && s >= -m) }'; then
    verdict OK "RSS slope after ${WARMUP}s warm-up: $SLOPE KB/min (bound +-$MAX_SLOPE; RSS $RSS_RANGE)"
else
    verdict FAIL "RSS slope after ${WARMUP}s warm-up: $SLOPE KB/min (bound +-$MAX_SLOPE; RSS $RSS_RANGE)"
fi
PEAK=$(awk -F, 'NR > 1 { if ($3 > f) f = $3; if ($4 > t) t = $4 } END { print f, t }' "$RESULTS/samples.csv")
if [ "$END_FDS" -le "$BASE_FDS" ]; then
    verdict OK "descriptors: baseline $BASE_FDS, peak ${PEAK% *}, end $END_FDS (settled ${SETTLED_AFTER}s after the load)"
else
    verdict FAIL "descriptors: baseline $BASE_FDS, peak ${PEAK% *}, end $END_FDS after ${SETTLE}s"
fi
if [ "$END_THREADS" -le "$BASE_THREADS" ]; then
    verdict OK "threads: baseline $BASE_THREADS, peak ${PEAK#* }, end $END_THREADS"
else
    verdict FAIL "threads: baseline $BASE_THREADS, peak ${PEAK#* }, end $END_THREADS after ${SETTLE}s"
fi

# jq-free JSON reading: the fields are flat numbers in mjpegd-load's report.
field() { # field FILE KEY: the first number after "KEY":
    grep -o "\"$2\":[0-9.]*" "$1" | head -n 1 | cut -d: -f2
}
load_line() {
    local f=$RESULTS/load-$1.json
    [ -s "$f" ] || {
        echo "no report"
        return
    }
    echo "sessions $(field "$f" sessions), frames $(field "$f" frames)," \
        "disconnected $(field "$f" disconnected), connect errors $(field "$f" connect)," \
        "HTTP errors $(field "$f" http_status), protocol errors $(field "$f" protocol)," \
        "invalid parts $(field "$f" invalid_parts)"
}
P=$RESULTS/load-pattern.json
if [ "$LOAD_OK" = yes ] && [ -s "$P" ] && [ "$(field "$P" disconnected)" = 0 ] &&
    [ "$(field "$P" connect)" = 0 ] && [ "$(field "$P" http_status)" = 0 ] &&
    [ "$(field "$P" protocol)" = 0 ] && [ "$(field "$P" invalid_parts)" = 0 ]; then
    verdict OK "healthy camera: $(load_line pattern)"
else
    verdict FAIL "healthy camera: $(load_line pattern)"
fi
echo "soak: info exec camera (killed every ${RESTART_EVERY}s): $(load_line exec)"
echo "soak: info relay camera (upstream down ${FLAP_DOWN}s of every ${FLAP_EVERY}s): $(load_line relay)"

polls() { # polls PATH: "N ok of M"
    awk -v p="$1" '$1 == p { n++; if ($2 == 200) ok++ } END { printf "%d of %d answered 200", ok, n }' \
        "$RESULTS/polls.txt"
}
for path in cameras/pattern/snapshot.jpg api/state; do
    line=$(polls "$path")
    read -r ok _ n _ <<<"$line"
    if [ "$n" -gt 0 ] && [ "$ok" = "$n" ]; then
        verdict OK "/$path: $line"
    else
        verdict FAIL "/$path: $line"
    fi
done
echo "soak: info /cameras/exec/snapshot.jpg: $(polls cameras/exec/snapshot.jpg)"
echo "soak: info /cameras/relay/snapshot.jpg: $(polls cameras/relay/snapshot.jpg)"

KILLS=$(grep -c '^killed' "$RESULTS/restarts.txt" 2>/dev/null || true)
NOT_BACK=$(grep -c 'restarted-after-s no' "$RESULTS/restarts.txt" 2>/dev/null || true)
NO_CHILD=$(grep -c '^no-child' "$RESULTS/restarts.txt" 2>/dev/null || true)
WORST=$(awk '$1 == "killed" && $NF != "no" { if ($NF > w) w = $NF } END { print w + 0 }' \
    "$RESULTS/restarts.txt" 2>/dev/null || echo 0)
if [ "${KILLS:-0}" -gt 0 ] && [ "${NOT_BACK:-0}" = 0 ] && [ "${NO_CHILD:-0}" = 0 ]; then
    verdict OK "exec source killed $KILLS times, back each time (slowest ${WORST}s)"
else
    verdict FAIL "exec source killed ${KILLS:-0} times, ${NOT_BACK:-0} not restarted, ${NO_CHILD:-0} times no child to kill"
fi
echo "soak: info upstream flaps: $(grep -c '^down' "$RESULTS/flaps.txt" 2>/dev/null || echo 0)"

if [ "$FAILED" = 0 ]; then
    echo "soak: PASS ($DURATION s; samples in $RESULTS/samples.csv)"
else
    echo "soak: FAIL (details in $RESULTS)"
fi
exit "$FAILED"
