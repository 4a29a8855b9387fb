#!/usr/bin/env bash
# The whole comparison in one command (see BENCHMARKS.md for the figures):
#   bench/run.sh [--quick] [--scale-only] [--out DIR] [-- extra proxy-bench.sh options]
# 1. builds target/release/portcullis;
# 2. runs the proxy-bench harness ($PROXY_BENCH_DIR/proxy-bench.sh, not part of
#    this repository) with Portcullis as the candidate
#    (bench/portcullis-candidate.sh), side by side with nginx and HAProxy;
# 3. runs bench/route-scale.py (10k routes: RSS, apply time, lookup cost;
#    new-route propagation at 3,000 routes; 20 route edits under load);
#    two binaries side by side: bench/route-scale-sbs.sh BASE_BIN NEW_BIN.
# --quick: 1 repetition of 5 s and fewer routes/trials, for a first look.
# --scale-only: only step 3 (the control-plane scale rows: RSS, one-route
#   change, new route live); needs no proxy-bench harness.
# With oha on PATH (`cargo install oha --locked`), proxy-bench also measures
# h1 latency at a fixed offered rate (50 % of nginx's rps) and h2c with oha.
# Needs (Debian): nginx-light haproxy wrk nghttp2-client curl. Only 127.0.0.1
# is used; every process started is stopped by PID. Not part of scripts/test.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="/tmp/portcullis-bench.$(date +%Y%m%d-%H%M%S)"; QUICK=0; SCALE_ONLY=0; EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift;;
    --scale-only) SCALE_ONLY=1; shift;;
    --out) OUT="$2"; shift 2;;
    --) shift; EXTRA=("$@"); break;;
    *) echo "unknown option $1 (bench/run.sh [--quick] [--scale-only] [--out DIR] [-- proxy-bench options])" >&2; exit 2;;
  esac
done
mkdir -p "$OUT"
cd "$HERE"
cargo build --release -p portcullis
if [ "$QUICK" = 1 ]; then
  PB=(--reps 1 --duration 5); RS=(--routes 10,1000 --prop-routes 1000 --trials 10 --edits 10)
else
  PB=(--reps 3 --duration 10); RS=()
fi
if [ "$SCALE_ONLY" = 0 ]; then
SHARED="${PROXY_BENCH_DIR:?set PROXY_BENCH_DIR to the directory holding proxy-bench.sh (or use --scale-only)}"
if command -v oha >/dev/null; then PB+=(--oha); fi
"$SHARED/proxy-bench.sh" --candidate-name portcullis --candidate-h2 --quiet-wait 120 "${PB[@]}" \
  --candidate-cmd "$HERE/bench/portcullis-candidate.sh {PORT} {H2PORT} {BACKEND_PORT} {RUNDIR}" \
  --out "$OUT/proxy-bench" "${EXTRA[@]}"
fi
python3 "$HERE/bench/route-scale.py" --out "$OUT/route-scale" "${RS[@]}" | tee "$OUT/route-scale.md"
echo "results: $OUT"
