#!/usr/bin/env bash
# Export throughput against `cat` of the same segment files (warm page cache), with two
# receivers: curl to /dev/null (what a user runs; its copy out of the socket costs as much as
# the server's work), and a zero-copy receiver that splices the socket into /dev/null (python3
# `os.splice`), which leaves the server's own cost. The transport ceiling is the segment files
# themselves sent whole with `sendfile` (python3) to the same receiver: no framing, no check;
# no server sends these bytes over this loopback faster. Each measurement is repeated
# BENCH_REPEAT times, interleaved (cat, ceiling, mkv, mjpeg, cat, ...) so that load from other
# processes falls on all of them alike; the table gives the median and the best run, and the
# server's CPU time per GB exported (from /proc: it resists contention, the wall-clock rates do
# not). Prints a markdown section. bench-recording.sh measures the same once, with the rest.
#
# Environment:
#   BENCH_FRAMES          720p JPEGs (default ../shared/frames/720p)
#   BENCH_WORK            scratch directory, deleted at the end (default target/bench-export)
#   BENCH_EXPORT_SECONDS  seconds of 720p30 generated (default 780: ~2.4 GB)
#   BENCH_REPEAT          runs of each measurement (default 5)
#   BENCH_PORT            TCP port (default 18281; the ceiling uses the next one)
#   BENCH_BIN_DIR         where mjpegd and examples/record_segments are (default target/release)
# Needs: curl, python3 (3.10 or later, for os.splice).
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
cat > "$WORK/sink.py" <<'PY'
# GET a path over loopback and splice the body into /dev/null: prints its size and seconds.
import fcntl, os, socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    c = s.recv(1)
    if not c:
        sys.exit(f"no response head for {path}")
    head += c
status = head.split()[1].decode()
if status != "200":
    sys.exit(f"{path}: HTTP {status}")
length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
r, w = os.pipe()
fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
null = os.open("/dev/null", os.O_WRONLY)
got = 0
while got < length:
    n = os.splice(s.fileno(), w, 1 << 20)
    if n == 0:
        sys.exit(f"{path}: closed after {got} of {length} bytes")
    left = n
    while left:
        left -= os.splice(r, null, left)
    got += n
print(got, time.perf_counter() - t0)
PY
python3 - "$CEIL_PORT" "$WORK"/rec/bench/*.seg > /dev/null 2>&1 <<'PY' &
# The segment files, whole, with sendfile: the ceiling of any server on this loopback.
import os, socket, sys
port, files = int(sys.argv[1]), sys.argv[2:]
size = sum(os.path.getsize(f) for f in files)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(4)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
    for f in files:
        fd, off, n = os.open(f, os.O_RDONLY), 0, os.path.getsize(f)
        while off < n:
            off += os.sendfile(c.fileno(), fd, off, n - off)
        os.close(fd)
    c.close()
PY
CEIL=$!
for _ in $(seq 200); do curl -sf -o /dev/null "$URL/api/state" && break; sleep 0.1; done

: > "$WORK/runs.txt"
for i in $(seq "$REPEAT"); do
  c0=$(date +%s.%N); cat "$WORK"/rec/bench/*.seg > /dev/null; c1=$(date +%s.%N)
  echo "cat $SEGBYTES $(python3 -c "print($c1 - $c0)")" >> "$WORK/runs.txt"
  echo "ceiling $(python3 "$WORK/sink.py" "$CEIL_PORT" /)" >> "$WORK/runs.txt"
  for fmt in mkv mjpeg; do
    path="/cameras/bench/export.$fmt?from=0&to=4000000000"
    t0=$(ticks "$SERVER")
    out=$(python3 "$WORK/sink.py" "$PORT" "$path")
    t1=$(ticks "$SERVER")
    echo "$fmt $out $(python3 -c "print(($t1 - $t0) / $HZ)")" >> "$WORK/runs.txt"
    t0=$(ticks "$SERVER")
    out=$(curl -s -o /dev/null -w '%{size_download} %{time_total} %{http_code}' "$URL$path")
    t1=$(ticks "$SERVER")
    read -r size secs code <<< "$out"
    [ "$code" = 200 ] || { echo "export.$fmt: HTTP $code"; exit 1; }
    echo "$fmt-curl $size $secs $(python3 -c "print(($t1 - $t0) / $HZ)")" >> "$WORK/runs.txt"
  done
done

echo "## Export throughput (scripts/bench-export.sh, $(date -u +%F))"
echo
echo "Machine: $(nproc) cores, $(uname -r), load average at the end $(cut -d' ' -f1-3 /proc/loadavg);"
echo "$(cut -d' ' -f1 "$WORK/gen.txt") frames of 720p, $SEGBYTES bytes of segments, warm page cache; $REPEAT runs each, interleaved."
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
for name, label in [("cat", "cat of the segment files"),
                    ("ceiling", "ceiling: the segment files whole by sendfile, splice receiver"),
                    ("mkv", "export.mkv, splice receiver"), ("mjpeg", "export.mjpeg, splice receiver"),
                    ("mkv-curl", "export.mkv, curl"), ("mjpeg-curl", "export.mjpeg, curl")]:
    rs = runs[name]
    med = statistics.median(rate(r) for r in rs)
    cpu = [r[2] / (r[0] / 1e9) for r in rs if r[2] is not None]
    cpu = f"{statistics.median(cpu):.2f}" if cpu else ""
    print(f"| {label} | {rs[0][0]} | {med:.0f} | {max(rate(r) for r in rs):.0f} | {med / cat:.2f} | {med / ceil:.2f} | {cpu} |")
PY
