#!/usr/bin/env bash
# Export throughput against `cat` of the same segment files (warm page cache), and against the
# loopback ceiling: the same number of bytes sent from memory over loopback to the same client
# (python3, one `send` per MiB), which no server can beat with that client. Each measurement is
# repeated BENCH_REPEAT times, interleaved (cat, ceiling, mkv, mjpeg, cat, ...) so that load from
# other processes on the machine falls on all of them alike; the table gives the median and the
# best run, and the server's CPU time per GB exported (from /proc: it resists contention, the
# wall-clock rates do not). Prints a markdown section. bench-recording.sh measures the same once,
# with the rest.
#
# Environment:
#   BENCH_FRAMES          720p JPEGs (default ../shared/frames/720p)
#   BENCH_WORK            scratch directory, deleted at the end (default target/bench-export)
#   BENCH_EXPORT_SECONDS  seconds of 720p30 generated (default 780: ~2.4 GB)
#   BENCH_REPEAT          runs of each measurement (default 5)
#   BENCH_PORT            TCP port (default 18281; the ceiling uses the next one)
#   BENCH_BIN_DIR         where mjpegd and examples/record_segments are (default target/release)
# Needs: curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FRAMES=$(cd "${BENCH_FRAMES:-$ROOT/../shared/frames/720p}" && pwd)
WORK=${BENCH_WORK:-$ROOT/target/bench-export}
EXPORT_SECONDS=${BENCH_EXPORT_SECONDS:-780}
REPEAT=${BENCH_REPEAT:-5}
PORT=${BENCH_PORT:-18281}
CEIL_PORT=$((PORT + 1))
BIN_DIR=${BENCH_BIN_DIR:-$ROOT/target/release}
BIN=$BIN_DIR/mjpegd
GEN=$BIN_DIR/examples/record_segments
URL=http://127.0.0.1:$PORT
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

rm -rf "$WORK"
mkdir -p "$WORK"
SERVER=
CEIL=
cleanup() {
  for p in $SERVER $CEIL; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$GEN" "$WORK/rec/bench" "$FRAMES" "$EXPORT_SECONDS" 30 60 > "$WORK/gen.txt"
SEGBYTES=$(du -cb "$WORK"/rec/bench/*.seg | tail -1 | cut -f1)
cat "$WORK"/rec/bench/*.seg > /dev/null
cat > "$WORK/mjpegd.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[[cameras]]
name = "bench"
source = "images:$FRAMES"
fps = 30
[cameras.record]
dir = "$WORK/rec"
mode = "off"
max_bytes = "1T"
TOML
"$BIN" --config "$WORK/mjpegd.toml" > "$WORK/server.log" 2>&1 &
SERVER=$!
python3 - "$CEIL_PORT" "$SEGBYTES" > /dev/null 2>&1 <<'PY' &
import socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(4)
buf = b"\0" * (1 << 20)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
    left = size
    while left > 0:
        n = min(left, len(buf))
        c.sendall(buf[:n])
        left -= n
    c.close()
PY
CEIL=$!
for _ in $(seq 200); do curl -sf -o /dev/null "$URL/api/state" && break; sleep 0.1; done

: > "$WORK/runs.txt"
for i in $(seq "$REPEAT"); do
  c0=$(date +%s.%N); cat "$WORK"/rec/bench/*.seg > /dev/null; c1=$(date +%s.%N)
  echo "cat $SEGBYTES $(python3 -c "print($c1 - $c0)")" >> "$WORK/runs.txt"
  out=$(curl -s -o /dev/null -w '%{size_download} %{time_total}' "http://127.0.0.1:$CEIL_PORT/")
  echo "ceiling $out" >> "$WORK/runs.txt"
  for fmt in mkv mjpeg; do
    t0=$(ticks "$SERVER")
    out=$(curl -s -o /dev/null -w '%{size_download} %{time_total} %{http_code}' "$URL/cameras/bench/export.$fmt?from=0&to=4000000000")
    t1=$(ticks "$SERVER")
    read -r size secs code <<< "$out"
    [ "$code" = 200 ] || { echo "export.$fmt: HTTP $code"; exit 1; }
    echo "$fmt $size $secs $(python3 -c "print(($t1 - $t0) / $HZ)")" >> "$WORK/runs.txt"
  done
done

echo "## Export throughput (scripts/bench-export.sh, $(date -u +%F))"
echo
echo "Machine: $(nproc) cores, $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg);"
echo "$(cut -d' ' -f1 "$WORK/gen.txt") frames of 720p, $SEGBYTES bytes of segments, warm page cache, curl to /dev/null; $REPEAT runs each, interleaved."
echo
python3 - "$WORK/runs.txt" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, size, secs, *cpu = line.split()
    runs.setdefault(name, []).append((int(size), float(secs), float(cpu[0]) if cpu else None))
rate = lambda r: r[0] / r[1] / 1e6
cat = statistics.median(rate(r) for r in runs["cat"])
ceil = statistics.median(rate(r) for r in runs["ceiling"])
print("| what | bytes | MB/s median | MB/s best | median / cat | median / ceiling | server CPU s/GB (median) |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name, label in [("cat", "cat of the segment files"), ("ceiling", "loopback ceiling (python3, from memory)"),
                    ("mkv", "export.mkv (curl, loopback)"), ("mjpeg", "export.mjpeg (curl, loopback)")]:
    rs = runs[name]
    med = statistics.median(rate(r) for r in rs)
    cpu = [r[2] / (r[0] / 1e9) for r in rs if r[2] is not None]
    cpu = f"{statistics.median(cpu):.2f}" if cpu else ""
    print(f"| {label} | {rs[0][0]} | {med:.0f} | {max(rate(r) for r in rs):.0f} | {med / cat:.2f} | {med / ceil:.2f} | {cpu} |")
PY
