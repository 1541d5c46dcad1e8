#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for a bounded time, starting from the
# committed corpus (fuzz/corpus/TARGET). Fails on any crash, leak, timeout or out-of-memory and
# prints the path of the input that caused it; new inputs found go to a scratch directory, so
# the committed corpus is not changed (grow it on purpose: see fuzz/README.md).
#
# Environment:
#   FUZZ_SECONDS  seconds per target (default 50)
#   FUZZ_TARGETS  targets to run (default: every one `cargo fuzz list` names)
#   FUZZ_WORK     scratch directory for new inputs and logs (default fuzz/target/fuzz-run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

SECONDS_PER=${FUZZ_SECONDS:-50}
WORK=${FUZZ_WORK:-$PWD/target/fuzz-run}
[[ "$SECONDS_PER" =~ ^[0-9]+$ ]] && [ "$SECONDS_PER" -gt 0 ] ||
    { echo "fuzz.sh: FUZZ_SECONDS must be a positive whole number" >&2; exit 2; }

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: no nightly toolchain (cargo-fuzz needs one): rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

TARGETS=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
start=$(date +%s)
echo "== cargo +nightly fuzz build"
cargo +nightly fuzz build
echo "fuzz.sh: built in $(($(date +%s) - start)) s"

rm -rf "$WORK"
mkdir -p "$WORK"
failed=()
for t in $TARGETS; do
    corpus=corpus/$t
    if [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
        echo "fuzz.sh: $corpus is missing or empty (the corpus is committed)" >&2
        failed+=("$t (no corpus)")
        continue
    fi
    dict=()
    case $t in mjpeg_read | roundtrip | jpeg_scan | bus_wire) dict=(-dict=mjpeg.dict) ;; esac
    mkdir -p "$WORK/$t" "artifacts/$t"
    echo "== fuzz $t for ${SECONDS_PER}s ($(ls "$corpus" | wc -l) corpus inputs)"
    # New inputs go to the first (scratch) directory; the committed corpus is only read.
    if cargo +nightly fuzz run "$t" "$WORK/$t" "$corpus" -- \
        -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" >"$WORK/$t.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$WORK/$t.log" | grep -o '[0-9]*$')
        cov=$(grep -o 'cov: [0-9]*' "$WORK/$t.log" | tail -n 1)
        echo "fuzz.sh: $t ok: ${runs:-?} executions, ${cov:-cov: ?}"
    else
        tail -n 40 "$WORK/$t.log"
        artifact=$(grep -o 'Test unit written to [^ ]*' "$WORK/$t.log" | tail -n 1 |
            sed 's/Test unit written to //')
        case $artifact in /*) ;; ?*) artifact=$PWD/${artifact#./} ;; esac
        echo "fuzz.sh: $t FAILED; input: ${artifact:-none written} (full log: $WORK/$t.log)" >&2
        echo "fuzz.sh: reproduce with: cd fuzz && cargo +nightly fuzz run $t ${artifact:-ARTIFACT}" >&2
        echo "fuzz.sh: once fixed, keep it as a regression: cp it to fuzz/regressions/$t/" >&2
        failed+=("$t")
    fi
done
echo "fuzz.sh: took $(($(date +%s) - start)) s"
ran=$(wc -w <<<"$TARGETS")
# The plain closing line CI reads: each target counts as one test.
echo "fuzz: $((ran - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
