#!/usr/bin/env bash
# The whole comparison in one command, from a clone of this repository alone (see
# BENCHMARKS.md for the figures):
#   bench/run.sh [--quick] [--scale-only] [--out DIR] [-- extra bench/sbs.sh options]
# 1. builds the release binary (cargo build --release -p portcullis; $CARGO_TARGET_DIR is
#    honoured);
# 2. runs bench/sbs.sh: Portcullis, nginx and HAProxy side by side in one run (h1 rps, p99,
#    proxy CPU per request; h2c and HTTPS/h2 rps; TLS handshakes per second, full and resumed;
#    instructions per request under callgrind and system calls per request under strace),
#    installing nginx, HAProxy, wrk, h2load (nghttp2-client), valgrind and strace with
#    apt-get when they are missing;
# 3. runs bench/route-scale.py (10k routes: RSS, apply time, lookup cost; new-route
#    propagation at 3,000 routes; 20 route edits under load);
#    two binaries side by side: bench/route-scale-sbs.sh BASE_BIN NEW_BIN.
# --quick: 1 repetition of 5 s and fewer routes/trials, for a first look.
# --scale-only: only step 3 (the control-plane scale rows: RSS, one-route change, new route live).
# Policies on the request path: bench/policies.sh (needs -p portcullis-conformance too).
# Only 127.0.0.1 is used; every process started is stopped by PID. Not part of scripts/test or CI.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="/tmp/portcullis-bench.$(date +%Y%m%d-%H%M%S)"; QUICK=0; SCALE_ONLY=0; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift;;
    --scale-only) SCALE_ONLY=1; shift;;
    --out) OUT="$2"; shift 2;;
    --) shift; EXTRA=("$@"); break;;
    *) echo "unknown option $1 (bench/run.sh [--quick] [--scale-only] [--out DIR] [-- bench/sbs.sh options])" >&2; exit 2;;
  esac
done
mkdir -p "$OUT"
cd "$HERE"
cargo build --release -p portcullis
BIN="${CARGO_TARGET_DIR:-$HERE/target}/release/portcullis"
case "$BIN" in /*) ;; *) BIN="$HERE/$BIN";; esac
if [ "$QUICK" = 1 ]; then
  SBS=(--quick); RS=(--routes 10,1000 --prop-routes 1000 --trials 10 --edits 10)
else
  SBS=(); RS=()
fi
if [ "$SCALE_ONLY" = 0 ]; then
  "$HERE/bench/sbs.sh" "${SBS[@]}" --bin "$BIN" --out "$OUT/sbs" "${EXTRA[@]}"
fi
python3 "$HERE/bench/route-scale.py" --bin "$BIN" --out "$OUT/route-scale" "${RS[@]}" | tee "$OUT/route-scale.md"
echo "results: $OUT"
