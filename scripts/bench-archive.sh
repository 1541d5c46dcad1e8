#!/usr/bin/env bash
# An archive of months: 4 cameras x 30 days, synthetic, then what a server costs on it: the
# time until it serves, its memory, `/recordings` for one day, the start of a one-hour export
# from the middle, and the frame-list cache while eight exports from different days run.
# Prints a markdown section for BENCHMARKS.md.
#
# The archive is 1 fps (one 60 s segment = 60 frames) with small JPEGs: 30 fps for 30 days of
# 4 cameras would be 311 M frames (over 70 GB even with 200-byte frames). Startup and memory
# depend on the number of segments (172 800 here, as at 30 fps), not of frames, and the
# frame-level costs (an export's selection, a frame list loaded) are per segment read.
#
# Environment:
#   BENCH_WORK     scratch directory, deleted at the end (default target/bench-archive)
#   BENCH_DAYS     days per camera (default 30)
#   BENCH_CAMERAS  cameras (default 4)
#   BENCH_PORT     TCP port (default 18380)
#   BENCH_KEEP=1   keep the archive (a second run with the same BENCH_WORK reuses it)
# Needs: ffmpeg, curl, python3; builds target/release/mjpegd and the record_segments example.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=${BENCH_WORK:-$ROOT/target/bench-archive}
DAYS=${BENCH_DAYS:-30}
CAMERAS=${BENCH_CAMERAS:-4}
PORT=${BENCH_PORT:-18380}
URL=http://127.0.0.1:$PORT
BIN=$ROOT/target/release/mjpegd
GEN=$ROOT/target/release/examples/record_segments

cargo build -q --release -p mjpegd --example record_segments
cargo build -q --release -p mjpegd

SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  [ "${BENCH_KEEP:-}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
names=()
for i in $(seq 1 "$CAMERAS"); do names+=("cam$i"); done

# 1. The archive (reused when BENCH_KEEP left one of the same shape).
if [ ! -f "$WORK/archive.done" ] || [ "$(cat "$WORK/archive.done")" != "$DAYS x $CAMERAS" ]; then
  rm -rf "$WORK"
  mkdir -p "$WORK/tiny"
  ffmpeg -v error -f lavfi -i testsrc=size=32x24:rate=1 -frames:v 1 -q:v 20 "$WORK/tiny/t.jpg"
  t0=$(date +%s.%N)
  for c in "${names[@]}"; do
    "$GEN" "$WORK/rec/$c" "$WORK/tiny" $((DAYS * 86400)) 1 60 > "$WORK/gen-$c.txt" &
  done
  wait
  echo "$DAYS x $CAMERAS" > "$WORK/archive.done"
  gen_s=$(python3 -c "import time; print(f'{time.time() - $t0:.0f}')")
else
  gen_s="(reused)"
fi
segments=$(find "$WORK/rec" -name '*.seg' | wc -l)
frames=$(cat "$WORK"/gen-*.txt | awk '{s += $1} END {print s}')
disk=$(du -sb "$WORK/rec" | cut -f1)
idx=$(find "$WORK/rec" -name '*.idx' -printf '%s\n' | awk '{s += $1} END {print s}')

{
  echo "[server]"
  echo "listen = \"127.0.0.1:$PORT\""
  for c in "${names[@]}"; do
    printf '\n[[cameras]]\nname = "%s"\nsource = "testpattern"\nsize = "320x240"\nfps = 1\n' "$c"
    printf '[cameras.record]\ndir = "%s"\nmode = "off"\nmax_bytes = "1T"\n' "$WORK/rec"
  done
} > "$WORK/mjpegd.toml"

# Starts the server; STARTED is the seconds until its first answer. (Not in a subshell: the
# server must not hold a command substitution's pipe, and SERVER must stay set.)
start() {
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" --config "$WORK/mjpegd.toml" > /dev/null 2> "$WORK/server.log" &
  SERVER=$!
  until curl -sf -o /dev/null "$URL/api/state"; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  STARTED=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
cold_log=

# 2. Startup, cold (page cache dropped when allowed) and warm.
sync
cold="n/a (not root)"
if [ -w /proc/sys/vm/drop_caches ]; then
  echo 3 > /proc/sys/vm/drop_caches
  start
  cold=$STARTED
  cold_log=$(grep -o 'catalogued in [0-9.]* ms' "$WORK/server.log" | tr '\n' ' ')
  stop
fi
start
warm=$STARTED
rss_start=$(rss "$SERVER")

# 3. Queries: the archive's middle day of camera 1, an hour from its middle.
now=$(date +%s)
mid=$((now - DAYS * 86400 / 2))
day_from=$((mid - 43200)); day_to=$((mid + 43200))
recordings_ms() {
  curl -s -o "$WORK/spans.json" -w '%{time_total}' "$URL/cameras/cam1/recordings?from=$day_from&to=$day_to" |
    python3 -c 'import sys; print(f"{float(sys.stdin.read()) * 1000:.1f}")'
}
rec1=$(recordings_ms); rec2=$(recordings_ms); rec3=$(recordings_ms)
spans=$(python3 -c "import json; d = json.load(open('$WORK/spans.json')); print(len(d['spans']), sum(s['frames'] for s in d['spans']))")
export_start() {
  curl -s -o /dev/null -w '%{time_starttransfer} %{size_download}\n' \
    "$URL/cameras/$1/export.mkv?from=$2&to=$(($2 + 3600))"
}
read -r ttfb1 size1 < <(export_start cam1 $((mid - 1800)))
read -r ttfb2 _ < <(export_start cam2 $((mid + 7200)))
ms() { python3 -c "print(f'{float(\"$1\") * 1000:.0f}')"; }

# 4. Eight exports of one hour from eight different days at once; RSS and cache after.
exports=()
for k in $(seq 1 8); do
  c=${names[$(((k - 1) % CAMERAS))]}
  curl -s -o /dev/null "$URL/cameras/$c/export.mkv?from=$((now - k * 86400 - 3 * 86400))&to=$((now - k * 86400 - 3 * 86400 + 3600))" &
  exports+=($!)
done
wait "${exports[@]}"
rss_after=$(rss "$SERVER")
stop

echo "## A month of four cameras (scripts/bench-archive.sh, $(date -u +%F))"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -r)."
echo "Archive: $CAMERAS cameras x $DAYS days at 1 fps, 60 s segments: $segments segments, $frames frames,"
echo "$((disk / 1048576)) MiB on disk of which $((idx / 1024)) KiB indexes ($(python3 -c "print(f'{$idx / $frames:.1f}')") bytes a frame; generated in $gen_s s)."
echo
echo "| measure | value |"
echo "| --- | --- |"
echo "| start until the first answer, cold page cache | $cold s |"
echo "| start until the first answer, warm | $warm s |"
echo "| RSS after start | $((rss_start / 1024)) MiB |"
echo "| \`/recordings\` for one day (3 runs) | $rec1 / $rec2 / $rec3 ms ($spans) |"
echo "| export.mkv of one hour from the middle: first byte | $(ms "$ttfb1") ms ($size1 bytes), another camera $(ms "$ttfb2") ms |"
echo "| RSS after 8 concurrent one-hour exports of different days | $((rss_after / 1024)) MiB |"
echo
echo "Catalogue reads per camera (side by side): cold ${cold_log:-n/a}; warm $(grep -o 'catalogued in [0-9.]* ms' "$WORK/server.log" | tr '\n' ' ')"
