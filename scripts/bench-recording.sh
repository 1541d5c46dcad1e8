#!/usr/bin/env bash
# Recording benchmarks: the cost of recording one 720p30 camera, the startup scan of a day's
# catalogue, export throughput against `cat` of the same segment files, the server's RSS during
# a >= 2 GB export, and a replay to 100 concurrent viewers. Prints a markdown section.
#
# Environment:
#   BENCH_FRAMES          720p JPEGs (default ../shared/frames/720p)
#   BENCH_WORK            scratch directory, deleted at the end (default target/bench-recording)
#   BENCH_EXPORT_SECONDS  seconds of 720p30 generated for the export (default 780: ~2.2 GB)
#   BENCH_DAY_SECONDS     seconds of 30 fps generated for the scan benchmark (default 86400)
#   BENCH_PORT            TCP port (default 18280)
# Needs: target/release/{mjpegd,mjpegd-load,examples/record_segments}, curl, ffmpeg.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FRAMES=$(cd "${BENCH_FRAMES:-$ROOT/../shared/frames/720p}" && pwd)
WORK=${BENCH_WORK:-$ROOT/target/bench-recording}
EXPORT_SECONDS=${BENCH_EXPORT_SECONDS:-780}
DAY_SECONDS=${BENCH_DAY_SECONDS:-86400}
PORT=${BENCH_PORT:-18280}
BIN=$ROOT/target/release/mjpegd
LOAD=$ROOT/target/release/mjpegd-load
GEN=$ROOT/target/release/examples/record_segments
URL=http://127.0.0.1:$PORT
HZ=$(getconf CLK_TCK)

rm -rf "$WORK"
mkdir -p "$WORK"
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
state() { curl -sf "$URL/api/state"; }
written() { state | python3 -c 'import json,sys; print(json.load(sys.stdin)["cameras"][0].get("recording", {}).get("bytes_written", 0))'; }
start() { # config file
  "$BIN" --config "$1" > "$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 200); do curl -sf -o /dev/null "$URL/api/state" && return 0; sleep 0.1; done
  echo "server did not start:"; cat "$WORK/server.log"; exit 1
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
config() { # record-section-or-empty
  cat > "$WORK/mjpegd.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[[cameras]]
name = "bench"
source = "images:$FRAMES"
fps = 30
$1
TOML
}

echo "## Recording (scripts/bench-recording.sh, $(date -u +%F))"
echo
echo "Machine: $(nproc) cores, shared with other builds while measured: CPU numbers are CPU time"
echo "of the server process from /proc (they resist contention), times are wall clock (they do not)."
echo

# 1. Recording cost: the 720p frames passed through (no encode), 30 fps, 30 s.
SECS=30
config ""
start "$WORK/mjpegd.toml"
curl -s -o /dev/null "$URL/cameras/bench/stream" & VIEWER=$!
sleep 3
t0=$(ticks "$SERVER"); sleep $SECS; t1=$(ticks "$SERVER")
kill $VIEWER; wait $VIEWER 2>/dev/null || true
stop
base=$(python3 -c "print(f'{($t1 - $t0) / $HZ / $SECS * 100:.1f}')")
config "[cameras.record]
dir = \"$WORK/cost\""
start "$WORK/mjpegd.toml"
sleep 3
t0=$(ticks "$SERVER"); b0=$(written); sleep $SECS; t1=$(ticks "$SERVER"); b1=$(written)
stop
rec=$(python3 -c "print(f'{($t1 - $t0) / $HZ / $SECS * 100:.1f}')")
mbs=$(python3 -c "print(f'{($b1 - $b0) / $SECS / 1e6:.2f}')")
echo "| recording one 720p30 camera (images source, ~100 KB frames, no viewer) | value |"
echo "| --- | --- |"
echo "| server CPU, recording, no viewer | $rec % of a core |"
echo "| server CPU, not recording, one live viewer (same capture) | $base % of a core |"
echo "| written | $mbs MB/s |"
echo

# 2. Startup scan of a day of 30 fps (small JPEGs: the scan reads headers only, so the payload
#    size matters only for disk space).
mkdir -p "$WORK/tiny"
ffmpeg -v error -f lavfi -i testsrc=size=64x48:rate=1 -frames:v 1 "$WORK/tiny/t.jpg"
"$GEN" "$WORK/day/bench" "$WORK/tiny" "$DAY_SECONDS" 30 60 > "$WORK/gen-day.txt"
config "[cameras.record]
dir = \"$WORK/day\"
mode = \"off\"
max_bytes = \"1T\""
start "$WORK/mjpegd.toml"
stop
scan=$(grep -o 'catalogued in [0-9.]* ms' "$WORK/server.log" | head -1)
start "$WORK/mjpegd.toml"
rss_day=$(rss "$SERVER")
stop
scan2=$(grep -o 'catalogued in [0-9.]* ms' "$WORK/server.log" | head -1)
echo "Startup scan of $(cat "$WORK/gen-day.txt" | cut -d' ' -f1) records ($DAY_SECONDS s at 30 fps, $(ls "$WORK/day/bench" | wc -l) segments):"
echo "$scan (first start), $scan2 (second, warm page cache); server RSS with that catalogue: $((rss_day / 1024)) MiB."
echo
rm -rf "$WORK/day"

# 3. Export of >= 2 GB against cat, RSS sampled every 50 ms.
"$GEN" "$WORK/rec/bench" "$FRAMES" "$EXPORT_SECONDS" 30 60 > "$WORK/gen.txt"
SEGBYTES=$(du -cb "$WORK"/rec/bench/*.seg | tail -1 | cut -f1)
cat "$WORK"/rec/bench/*.seg > /dev/null
c0=$(date +%s.%N); cat "$WORK"/rec/bench/*.seg > /dev/null; c1=$(date +%s.%N)
config "[cameras.record]
dir = \"$WORK/rec\"
mode = \"off\"
max_bytes = \"1T\""
start "$WORK/mjpegd.toml"
rss0=$(rss "$SERVER")
peak=$rss0
for fmt in mkv mjpeg; do
  ( while kill -0 "$SERVER" 2>/dev/null; do rss "$SERVER"; sleep 0.05; done ) > "$WORK/rss-$fmt.txt" & SAMPLER=$!
  out=$(curl -s -o /dev/null -w '%{size_download} %{time_total} %{http_code}' "$URL/cameras/bench/export.$fmt?from=0&to=4000000000")
  kill $SAMPLER; wait $SAMPLER 2>/dev/null || true
  read -r size secs code <<< "$out"
  p=$(sort -n "$WORK/rss-$fmt.txt" | tail -1)
  [ "$p" -gt "$peak" ] && peak=$p
  eval "EXP_$fmt=\"$size $secs $code $p\""
done
echo "| export ($(cut -d' ' -f1 "$WORK/gen.txt") frames of 720p, $((SEGBYTES / 1000000)) MB of segments) | bytes | seconds | MB/s | server RSS peak (before: $((rss0 / 1024)) MiB) |"
echo "| --- | --- | --- | --- | --- |"
python3 - "$c0" "$c1" "$SEGBYTES" <<PY
import sys
c0, c1, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"| cat of the segment files (warm) | {n} | {c1 - c0:.2f} | {n / (c1 - c0) / 1e6:.0f} | |")
for name, row in [("export.mkv (curl, loopback)", "$EXP_mkv"), ("export.mjpeg (curl, loopback)", "$EXP_mjpeg")]:
    size, secs, code, peak = row.split()
    print(f"| {name}, HTTP {code} | {size} | {float(secs):.2f} | {int(size) / float(secs) / 1e6:.0f} | {int(peak) // 1024} MiB (+{(int(peak) - $rss0) / 1024:.1f}) |")
PY
echo

# 4. Replay to 100 concurrent viewers, 15 s, from the start of the recording.
FROM=$(curl -sf "$URL/cameras/bench/recordings" | python3 -c 'import json,sys; print(json.load(sys.stdin)["spans"][0]["start_us"] / 1e6)')
echo '```'
"$LOAD" run --url "$URL/cameras/bench/replay?from=$FROM" --viewers 100 --duration 15 --pid "$SERVER" --label "replay, 100 viewers" 2>&1 | tail -n 20
echo '```'
stop
