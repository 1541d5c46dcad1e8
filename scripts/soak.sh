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
#   SOAK_PROFILE       release (default) or debug: which target/ binaries to build and run
#   SOAK_BIN_DIR       run the mjpegd and mjpegd-load in this directory instead (with SOAK_NO_BUILD=1)
#
# Full mode (`scripts/soak.sh --full` or SOAK_MODE=full): recording, the bus, exports and replays.
#   node     the server under test: cameras `rec` and `motion` (320x240 test patterns), both
#            recorded into $SOAK_RESULTS/rec with a small max_bytes (retention deletes segments
#            while exports and replays read them), `motion` also with [cameras.motion]; both
#            published on a nats-server. (A motion-triggered recording mode does not exist yet:
#            `motion` records continuously, its detector runs beside the recorder.)
#   edge     a second mjpegd serving the cameras it discovers on the bus
#   nats     a nats-server, stopped and restarted every SOAK_NATS_RESTART_EVERY s
# Load: SOAK_VIEWERS churning viewers of `rec` and half as many of `motion` on the node,
# SOAK_EDGE_VIEWERS of `rec` on the edge; an export every SOAK_EXPORT_EVERY s (recent ranges,
# whole-recording ones read slowly so retention deletes under them, and some aborted after 1 s);
# a replay started every SOAK_REPLAY_EVERY s and stopped 2-8 s later; /api/state of both once a
# second. RSS, descriptors and threads of node and edge are sampled every 10 s.
# Pass: as above for both processes (RSS slope, descriptors and threads back to baseline), no
# viewer of the node or the edge disconnected, every completed export (200 and all its
# Content-Length) plays in ffprobe with at least one frame, replays answered, retention deleted
# segments, and the edge received frames again after every nats-server restart.
#   SOAK_NATS_RESTART_EVERY seconds between nats-server restarts (default 300)
#   SOAK_EDGE_VIEWERS  viewers on the edge (default SOAK_VIEWERS / 4)
#   SOAK_EXPORT_EVERY  seconds between exports (default 10)
#   SOAK_REPLAY_EVERY  seconds between replays (default 5)
#   SOAK_MAX_BYTES     retention per recorded camera (default 4M)
set -euo pipefail

MODE=${SOAK_MODE:-classic}
for arg in "$@"; do
    case $arg in
    --full) MODE=full ;;
    *)
        echo "soak: unknown argument $arg (use --full, or see the top of this script)" >&2
        exit 2
        ;;
    esac
done

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

PROFILE=${SOAK_PROFILE:-release}
BIN_DIR=${SOAK_BIN_DIR:-target/$PROFILE}
SERVER=$BIN_DIR/mjpegd
LOAD=$BIN_DIR/mjpegd-load
NATS_RESTART_EVERY=${SOAK_NATS_RESTART_EVERY:-300}
EDGE_VIEWERS=${SOAK_EDGE_VIEWERS:-$(((VIEWERS + 3) / 4))}
EXPORT_EVERY=${SOAK_EXPORT_EVERY:-10}
REPLAY_EVERY=${SOAK_REPLAY_EVERY:-5}
MAX_BYTES=${SOAK_MAX_BYTES:-4M}

die() {
    echo "soak: $*" >&2
    exit 2
}
log() { echo "soak: [$(date -u +%H:%M:%S)] $*" >&2; }

[ "$MODE" = classic ] || [ "$MODE" = full ] || die "SOAK_MODE must be classic or full (got $MODE)"
[ "$PROFILE" = release ] || [ "$PROFILE" = debug ] || die "SOAK_PROFILE must be release or debug"
for v in DURATION WARMUP VIEWERS CHURN RESTART_EVERY FLAP_EVERY FLAP_DOWN PORT \
    NATS_RESTART_EVERY EDGE_VIEWERS EXPORT_EVERY REPLAY_EVERY; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "SOAK_$v must be a whole number (got ${!v})"
done
[ "$DURATION" -ge 60 ] || die "SOAK_DURATION must be at least 60 s"
[ "$WARMUP" -le $((DURATION / 3)) ] || WARMUP=$((DURATION / 3))
[ "$FLAP_DOWN" -lt "$FLAP_EVERY" ] || die "SOAK_FLAP_DOWN must be shorter than SOAK_FLAP_EVERY"
command -v ffmpeg >/dev/null || die "ffmpeg is needed (scripts/install-test-deps.sh)"
command -v curl >/dev/null || die "curl is needed"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$MODE" = full ]; then
    command -v nats-server >/dev/null || die "nats-server is needed for --full (scripts/install-test-deps.sh)"
    command -v ffprobe >/dev/null || die "ffprobe is needed for --full"
fi

if [ -z "${SOAK_NO_BUILD:-}" ]; then
    log "building $PROFILE binaries"
    if [ "$PROFILE" = release ]; then
        nice -n 10 cargo build --release --locked -p mjpegd -p mjpegd-load >&2
    else
        nice -n 10 cargo build --locked -p mjpegd -p mjpegd-load >&2
    fi
fi
[ -x "$SERVER" ] && [ -x "$LOAD" ] || die "no mjpegd and mjpegd-load in $BIN_DIR"

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
STOP=$RESULTS/stop

SERVER_PID=
UPSTREAM_PID=
EDGE_PID=
NATS_PID=
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
    # Full mode: the edge, and the nats-server the restarter last started (its id on file).
    for up in $EDGE_PID $NATS_PID $(cat "$RESULTS/nats.pid" 2>/dev/null); do
        kill -TERM "$up" 2>/dev/null
        wait "$up" 2>/dev/null
    done
    rm -f "$RESULTS/nats.pid"
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

# ---------------------------------------------------------------------------------------------
# Full mode: recording, the bus, exports and replays (see the top of this file).

# pid_sample PID: "rss_kb fds threads" of that process.
pid_sample() {
    local rss threads fds
    rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$1"/status)
    threads=$(awk '/^Threads:/ {print $2}' /proc/"$1"/status)
    fds=$(find /proc/"$1"/fd -mindepth 1 -maxdepth 1 | wc -l)
    echo "$rss $fds $threads"
}

# json_number URL KEY: the first number after "KEY": in the answer at URL (flat enough for grep).
json_number() {
    curl -s --max-time 5 "$1" | grep -o "\"$2\":[0-9]*" | head -n 1 | cut -d: -f2
}

run_full() {
    local EPORT=$((PORT + 1)) NPORT=$((PORT + 2))
    local NATS_URL=nats://127.0.0.1:$NPORT
    local NODE=http://127.0.0.1:$PORT EDGE=http://127.0.0.1:$EPORT
    port_free "$PORT" || die "port $PORT is taken (set SOAK_PORT)"
    port_free "$EPORT" || die "port $EPORT is taken (set SOAK_PORT)"

    start_nats() {
        nats-server -a 127.0.0.1 -p "$NPORT" >>"$RESULTS/nats.log" 2>&1 &
        NATS_PID=$!
        local i
        for ((i = 0; i < 100; i++)); do
            (exec 3<>/dev/tcp/127.0.0.1/"$NPORT") 2>/dev/null && return 0
            sleep 0.1
        done
        die "nats-server did not listen on $NPORT"
    }
    start_nats

    cat >"$RESULTS/node.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
max_connections_per_ip = 2000
snapshot_rate = 1000
public_state = true

[[cameras]]
name = "rec"
source = "testpattern"
size = "320x240"
fps = 15

[cameras.record]
dir = "$RESULTS/rec"
max_bytes = "$MAX_BYTES"
segment_seconds = 2

[[cameras]]
name = "motion"
source = "testpattern"
size = "320x240"
fps = 10

[cameras.record]
dir = "$RESULTS/rec"
max_bytes = "$MAX_BYTES"
segment_seconds = 2

[cameras.motion]
threshold = 0.005

[bus]
url = "$NATS_URL"
publish = true
EOF
    "$SERVER" --config "$RESULTS/node.toml" >"$RESULTS/server.log" 2>&1 &
    SERVER_PID=$!
    wait_listening "$PORT" "$SERVER_PID"
    "$SERVER" --listen "127.0.0.1:$EPORT" --public-state --max-connections-per-ip 2000 \
        --cameras-from "$NATS_URL" >"$RESULTS/edge.log" 2>&1 &
    EDGE_PID=$!
    wait_listening "$EPORT" "$EDGE_PID"
    local i
    for ((i = 0; i < 200; i++)); do
        curl -s --max-time 2 "$EDGE/api/state" | grep -q '"name":"rec"' && break
        sleep 0.1
    done
    [ "$i" -lt 200 ] || die "the edge never discovered camera rec (see $RESULTS/edge.log)"
    log "node $SERVER_PID on :$PORT, edge $EDGE_PID on :$EPORT, nats-server on :$NPORT; results in $RESULTS"

    # Warm-up: both cameras capture already (recording is demand); one viewer on the edge starts
    # its bus subscription once, and one export and replay create their one-time state.
    curl -s -o /dev/null --max-time 5 "$EDGE/cameras/rec/snapshot.jpg" || true
    log "warm-up: recording for 20 s before the baseline"
    sleep 20
    local now
    now=$(date +%s)
    curl -s -o /dev/null --max-time 20 "$NODE/cameras/rec/export.mkv?from=$((now - 10))&to=$now" || true
    curl -s -o /dev/null --max-time 2 "$NODE/cameras/rec/replay?from=$((now - 5))" || true
    sleep 15
    local BASE_FDS BASE_THREADS EBASE_FDS EBASE_THREADS
    read -r _ BASE_FDS BASE_THREADS < <(pid_sample "$SERVER_PID")
    read -r _ EBASE_FDS EBASE_THREADS < <(pid_sample "$EDGE_PID")
    log "baseline: node $BASE_FDS descriptors, $BASE_THREADS threads; edge $EBASE_FDS, $EBASE_THREADS"

    T0=$(date +%s)
    echo "t_s,rss_kb,fds,threads,edge_rss_kb,edge_fds,edge_threads" >"$RESULTS/samples.csv"
    (
        while [ ! -e "$STOP" ] && kill -0 "$SERVER_PID" 2>/dev/null; do
            read -r rss fds threads < <(pid_sample "$SERVER_PID") || break
            read -r erss efds ethreads < <(pid_sample "$EDGE_PID") || break
            echo "$(($(date +%s) - T0)),$rss,$fds,$threads,$erss,$efds,$ethreads" >>"$RESULTS/samples.csv"
            nap "$SAMPLE_EVERY" || break
        done
    ) &
    HELPERS+=($!)

    run_full_load() { # run_full_load LABEL URL VIEWERS
        exec "$LOAD" run --url "$2" --viewers "$3" --churn "$CHURN" --duration "$DURATION" \
            --ramp 10 --json --label "soak $1" >"$RESULTS/load-$1.json" 2>"$RESULTS/load-$1.log"
    }
    local LOADS=()
    run_full_load node-rec "$NODE/cameras/rec/stream" "$VIEWERS" &
    LOADS+=($!)
    run_full_load node-motion "$NODE/cameras/motion/stream" "$(((VIEWERS + 1) / 2))" &
    LOADS+=($!)
    run_full_load edge-rec "$EDGE/cameras/rec/stream" "$EDGE_VIEWERS" &
    LOADS+=($!)
    HELPERS+=("${LOADS[@]}")

    # /api/state of both, once a second.
    (
        while nap 1; do
            for u in "$NODE/api/state" "$EDGE/api/state"; do
                code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$u" || true)
                echo "$u $code" >>"$RESULTS/polls.txt"
            done
        done
    ) &
    HELPERS+=($!)

    # Exports: recent ranges read at full speed, the whole recording read slowly (retention
    # deletes its oldest segments meanwhile), and every third one aborted after a second.
    mkdir -p "$RESULTS/exports"
    (
        n=0
        while nap "$EXPORT_EVERY"; do
            n=$((n + 1))
            cam=rec
            [ $((n % 2)) = 0 ] && cam=motion
            now=$(date +%s)
            f=$RESULTS/exports/$n.mkv
            case $((n % 3)) in
            0) what=aborted url="$NODE/cameras/$cam/export.mkv?from=$((now - 30))&to=$now" opts=(--max-time 1 --limit-rate 100k) ;;
            1) what=recent url="$NODE/cameras/$cam/export.mkv?from=$((now - 30))&to=$((now - 2))" opts=(--max-time 60) ;;
            *) what=whole url="$NODE/cameras/$cam/export.mkv?from=0&to=$now" opts=(--max-time 120 --limit-rate 400k) ;;
            esac
            out=$(curl -s -o "$f" -D "$f.head" -w '%{http_code} %{size_download}' "${opts[@]}" "$url" || true)
            read -r code size <<<"$out"
            want=$(awk 'tolower($1) == "content-length:" { gsub("\r", ""); print $2 }' "$f.head" 2>/dev/null)
            if [ "$code" = 200 ] && [ -n "$want" ] && [ "$size" = "$want" ]; then
                frames=$(ffprobe -v error -count_packets -select_streams v:0 \
                    -show_entries stream=nb_read_packets -of csv=p=0 "$f" 2>>"$RESULTS/ffprobe.log" || echo 0)
                if [ "${frames:-0}" -gt 0 ] 2>/dev/null; then
                    echo "$n $what $cam completed plays $frames" >>"$RESULTS/exports.txt"
                else
                    echo "$n $what $cam completed BROKEN ${frames:-?}" >>"$RESULTS/exports.txt"
                    cp "$f" "$RESULTS/exports/broken-$n.mkv"
                fi
            else
                echo "$n $what $cam incomplete ${code:-000} ${size:-0}/${want:-?}" >>"$RESULTS/exports.txt"
            fi
            rm -f "$f" "$f.head"
        done
    ) &
    HELPERS+=($!)

    # Replays: one starts every REPLAY_EVERY s (recent, or from the oldest frame, which
    # retention deletes under it) and is stopped 2-8 s later.
    (
        n=0
        while nap "$REPLAY_EVERY"; do
            n=$((n + 1))
            now=$(date +%s)
            from=$((now - 20))
            [ $((n % 2)) = 0 ] && from=0
            (
                code=$(curl -s -o /dev/null -w '%{http_code}' --max-time $((2 + RANDOM % 7)) \
                    "$NODE/cameras/rec/replay?from=$from&speed=2" || true)
                echo "$n from=$from ${code:-000}" >>"$RESULTS/replays.txt"
            ) &
        done
        wait
    ) &
    HELPERS+=($!)

    # nats-server: stopped and started again on the same port every NATS_RESTART_EVERY s; the
    # edge must receive frames again each time.
    (
        pid=$NATS_PID
        while nap "$NATS_RESTART_EVERY"; do
            before=$(json_number "$EDGE/api/state" received)
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            start_nats
            pid=$NATS_PID
            echo "$pid" >"$RESULTS/nats.pid"
            back=no
            for ((i = 0; i < 60; i++)); do
                nap 1 || break
                now_received=$(json_number "$EDGE/api/state" received)
                if [ -n "$now_received" ] && [ "$now_received" -gt "${before:-0}" ]; then
                    back=$((i + 1))
                    break
                fi
            done
            echo "restart $(($(date +%s) - T0)) frames-back-after-s $back" >>"$RESULTS/nats-restarts.txt"
        done
    ) &
    local RESTARTER=$!
    HELPERS+=("$RESTARTER")

    log "load running for $DURATION s (node $VIEWERS + $(((VIEWERS + 1) / 2)) viewers, edge $EDGE_VIEWERS; nats-server restarts every $NATS_RESTART_EVERY s)"
    local LOAD_OK=yes p
    for p in "${LOADS[@]}"; do
        wait "$p" || LOAD_OK=no
    done
    T_END=$(($(date +%s) - T0))
    kill -0 "$SERVER_PID" 2>/dev/null || die "the node died during the soak (see $RESULTS/server.log)"
    kill -0 "$EDGE_PID" 2>/dev/null || die "the edge died during the soak (see $RESULTS/edge.log)"
    log "load over at t=$T_END s; stopping exports, replays and restarts"
    touch "$STOP"
    for p in "${HELPERS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    HELPERS=()
    # The restarter ran in a subshell: the nats-server it last started is on file.
    [ -s "$RESULTS/nats.pid" ] && NATS_PID=$(cat "$RESULTS/nats.pid")
    rm -f "$STOP"

    local END_FDS END_THREADS EEND_FDS EEND_THREADS
    for ((i = 0; i < SETTLE; i++)); do
        read -r _ END_FDS END_THREADS < <(pid_sample "$SERVER_PID")
        read -r _ EEND_FDS EEND_THREADS < <(pid_sample "$EDGE_PID")
        if [ "$END_FDS" -le "$BASE_FDS" ] && [ "$END_THREADS" -le "$BASE_THREADS" ] &&
            [ "$EEND_FDS" -le "$EBASE_FDS" ] && [ "$EEND_THREADS" -le "$EBASE_THREADS" ]; then
            break
        fi
        sleep 1
    done
    local SETTLED_AFTER=$i

    # --- verdicts ---
    FAILED=0
    verdict() { # verdict OK|FAIL TEXT
        printf 'soak: %-4s %s\n' "$1" "$2"
        [ "$1" = OK ] || FAILED=1
    }
    rss_verdict() { # rss_verdict WHO COLUMN
        local slope range
        slope=$(awk -F, -v c="$2" -v w="$WARMUP" -v e="$T_END" '
            NR > 1 && $1 >= w && $1 <= e { n++; x = $1 / 60; y = $c; sx += x; sy += y; sxx += x * x; sxy += x * y }
            END {
                d = n * sxx - sx * sx
                if (n < 3 || d == 0) { print "nan"; exit }
                printf "%.1f", (n * sxy - sx * sy) / d
            }' "$RESULTS/samples.csv")
        range=$(awk -F, -v c="$2" -v w="$WARMUP" -v e="$T_END" '
            NR > 1 && $1 >= w && $1 <= e { if (!n++ || $c < lo) lo = $c; if ($c > hi) hi = $c }
            END { printf "%.1f-%.1f MiB over %d samples", lo / 1024, hi / 1024, n }' "$RESULTS/samples.csv")
        if [ "$slope" != nan ] && awk -v s="$slope" -v m="$MAX_SLOPE" 'BEGIN { exit !(s <= m && s >= -m) }'; then
            verdict OK "$1 RSS slope after ${WARMUP}s warm-up: $slope KB/min (bound +-$MAX_SLOPE; RSS $range)"
        else
            verdict FAIL "$1 RSS slope after ${WARMUP}s warm-up: $slope KB/min (bound +-$MAX_SLOPE; RSS $range)"
        fi
    }
    back_verdict() { # back_verdict WHO WHAT BASE END PEAK_COLUMN
        local peak
        peak=$(awk -F, -v c="$5" 'NR > 1 { if ($c > p) p = $c } END { print p + 0 }' "$RESULTS/samples.csv")
        if [ "$4" -le "$3" ]; then
            verdict OK "$1 $2: baseline $3, peak $peak, end $4 (settled ${SETTLED_AFTER}s after the load)"
        else
            verdict FAIL "$1 $2: baseline $3, peak $peak, end $4 after ${SETTLE}s"
        fi
    }
    rss_verdict node 2
    back_verdict node descriptors "$BASE_FDS" "$END_FDS" 3
    back_verdict node threads "$BASE_THREADS" "$END_THREADS" 4
    rss_verdict edge 5
    back_verdict edge descriptors "$EBASE_FDS" "$EEND_FDS" 6
    back_verdict edge threads "$EBASE_THREADS" "$EEND_THREADS" 7

    field() { # field FILE KEY: the first number after "KEY":
        grep -o "\"$2\":[0-9.]*" "$1" | head -n 1 | cut -d: -f2
    }
    local who f
    for who in node-rec node-motion edge-rec; do
        f=$RESULTS/load-$who.json
        local line="no report"
        [ -s "$f" ] && line="sessions $(field "$f" sessions), frames $(field "$f" frames), disconnected $(field "$f" disconnected), connect errors $(field "$f" connect), HTTP errors $(field "$f" http_status), protocol errors $(field "$f" protocol), invalid parts $(field "$f" invalid_parts)"
        if [ "$LOAD_OK" = yes ] && [ -s "$f" ] && [ "$(field "$f" disconnected)" = 0 ] &&
            [ "$(field "$f" connect)" = 0 ] && [ "$(field "$f" http_status)" = 0 ] &&
            [ "$(field "$f" protocol)" = 0 ] && [ "$(field "$f" invalid_parts)" = 0 ] &&
            [ "$(field "$f" frames)" != 0 ]; then
            verdict OK "viewers $who: $line"
        else
            verdict FAIL "viewers $who: $line"
        fi
    done

    local done_ok broken incomplete total
    total=$(wc -l <"$RESULTS/exports.txt" 2>/dev/null || echo 0)
    done_ok=$(grep -c ' completed plays ' "$RESULTS/exports.txt" 2>/dev/null || true)
    broken=$(grep -c ' completed BROKEN' "$RESULTS/exports.txt" 2>/dev/null || true)
    incomplete=$(grep -c ' incomplete ' "$RESULTS/exports.txt" 2>/dev/null || true)
    local whole_ok
    whole_ok=$(grep -c ' whole .* completed plays ' "$RESULTS/exports.txt" 2>/dev/null || true)
    if [ "${done_ok:-0}" -gt 0 ] && [ "${broken:-0}" = 0 ]; then
        verdict OK "exports: $total started, ${done_ok:-0} completed and play in ffprobe (${whole_ok:-0} of them whole-recording reads under retention), ${incomplete:-0} aborted or incomplete by design"
    else
        verdict FAIL "exports: $total started, ${done_ok:-0} completed and play, ${broken:-0} completed but do not play (copies in $RESULTS/exports), ${incomplete:-0} incomplete"
    fi
    local replays replays_ok
    replays=$(wc -l <"$RESULTS/replays.txt" 2>/dev/null || echo 0)
    replays_ok=$(awk '$3 == 200' "$RESULTS/replays.txt" 2>/dev/null | wc -l)
    if [ "$replays_ok" -gt 0 ]; then
        local others
        others=$(awk '$3 != 200 { print $3 }' "$RESULTS/replays.txt" | sort | uniq -c | tr -s ' \n' ' ')
        verdict OK "replays: $replays_ok of $replays answered 200${others:+ (others, count and status:$others)}"
    else
        verdict FAIL "replays: none of $replays answered 200"
    fi
    local deleted
    deleted=$(json_number "$NODE/cameras/rec/recordings?from=0&to=1" segments_deleted)
    if [ "${deleted:-0}" -gt 0 ]; then
        verdict OK "retention: $deleted segments of rec deleted (max_bytes $MAX_BYTES) while exports and replays read"
    else
        verdict FAIL "retention: no segment deleted (max_bytes $MAX_BYTES)"
    fi
    local restarts not_back worst
    restarts=$(grep -c '^restart' "$RESULTS/nats-restarts.txt" 2>/dev/null || true)
    not_back=$(grep -c 'frames-back-after-s no' "$RESULTS/nats-restarts.txt" 2>/dev/null || true)
    worst=$(awk '$NF != "no" { if ($NF > w) w = $NF } END { print w + 0 }' "$RESULTS/nats-restarts.txt" 2>/dev/null || echo 0)
    if [ "${restarts:-0}" -gt 0 ] && [ "${not_back:-0}" = 0 ]; then
        verdict OK "nats-server restarted $restarts times; the edge received frames again each time (slowest ${worst}s)"
    else
        verdict FAIL "nats-server restarted ${restarts:-0} times, ${not_back:-0} times the edge got no frames within 60 s"
    fi
    local path line ok n
    for path in "$NODE/api/state" "$EDGE/api/state"; do
        line=$(awk -v p="$path" '$1 == p { n++; if ($2 == 200) ok++ } END { printf "%d of %d answered 200", ok, n }' "$RESULTS/polls.txt")
        read -r ok _ n _ <<<"$line"
        if [ "$n" -gt 0 ] && [ "$ok" = "$n" ]; then
            verdict OK "$path: $line"
        else
            verdict FAIL "$path: $line"
        fi
    done
    echo "soak: info motion events on camera motion: $(json_number "$NODE/cameras/motion/events" events_total)"
    if [ "$FAILED" = 0 ]; then
        echo "soak: PASS (full mode, $DURATION s; samples in $RESULTS/samples.csv)"
    else
        echo "soak: FAIL (full mode; details in $RESULTS)"
    fi
    return "$FAILED"
}

if [ "$MODE" = full ]; then
    [ "$DURATION" -ge 60 ] || die "SOAK_DURATION must be at least 60 s"
    rc=0
    run_full || rc=$?
    exit "$rc"
fi

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
