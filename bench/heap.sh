#!/usr/bin/env bash
# Where `portcullis run`'s memory goes at N routes: a heap profile by call site.
#
#   bench/heap.sh [ROUTES] [OUT]        (default 10000 routes, hosts shape)
#
# Builds portcullis with the system allocator (--no-default-features: heaptrack does not see
# mimalloc) into $CARGO_TARGET_DIR (or target/), writes the route directory with
# bench/route-scale.py --generate, runs `heaptrack portcullis run` on it, kills the process
# (by its PID) 3 s after the first "configuration applied", so heaptrack's "leaked" is the live
# heap at that moment, and prints the live heap as a tree of call sites (bench/heap-tree.py;
# branches of at least 2 MiB). Installs heaptrack with apt-get when missing; rustfilt (cargo
# install rustfilt) demangles when present. Ports: --admin 127.0.0.1:19383, the Gateway's
# listener 19282 (never served to: nothing is sent). Not part of scripts/test or CI.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUTES="${1:-10000}"
OUT="${2:-$(mktemp -d /tmp/portcullis-heap.XXXXXX)}"
mkdir -p "$OUT"
command -v heaptrack >/dev/null || apt-get install -y -q heaptrack >/dev/null
TARGET="${CARGO_TARGET_DIR:-$HERE/target}"
(cd "$HERE" && cargo build --release -p portcullis --bin portcullis --no-default-features)
BIN="$OUT/portcullis-system-alloc"
cp "$TARGET/release/portcullis" "$BIN"
python3 "$HERE/bench/route-scale.py" --generate "$OUT/config" --routes "$ROUTES" --shapes hosts
LOG="$OUT/run.log"
heaptrack -o "$OUT/heap" "$BIN" run --config "$OUT/config" --admin 127.0.0.1:19383 --workers 1 \
  --log-level info,access=off > "$LOG" 2>&1 &
HT=$!
PID=""
for _ in $(seq 1 1200); do
  PID="$(pgrep -f "^$BIN run" || true)"
  [ -n "$PID" ] && grep -q "configuration applied" "$LOG" && break
  sleep 0.1
done
[ -n "$PID" ] || { echo "portcullis did not start; see $LOG" >&2; kill "$HT" 2>/dev/null; exit 1; }
sleep 3
echo "RSS under heaptrack: $(grep VmRSS "/proc/$PID/status")"
kill -KILL "$PID"
wait "$HT" || true
FILE="$OUT/heap.zst"; [ -f "$FILE" ] || FILE="$OUT/heap.gz"   # heaptrack's compression
heaptrack_print -f "$FILE" --print-peaks 0 --print-allocators 0 --print-leaks 0 --print-temporary 0 \
  --print-flamegraph "$OUT/live.txt" --flamegraph-cost-type leaked > /dev/null
if command -v rustfilt >/dev/null; then rustfilt -i "$OUT/live.txt" -o "$OUT/live.d.txt"; else cp "$OUT/live.txt" "$OUT/live.d.txt"; fi
python3 "$HERE/bench/heap-tree.py" "$OUT/live.d.txt" 2
echo "profile: $FILE (heaptrack --analyze for the GUI); stacks: $OUT/live.d.txt" >&2
