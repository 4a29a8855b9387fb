#!/usr/bin/env bash
# The control-plane scale rows of BENCHMARKS.md side by side: two portcullis
# binaries (e.g. a release build of main and one of a branch), alternated in
# each round so the shared machine's noise hits both alike.
#   bench/route-scale-sbs.sh BASE_BIN NEW_BIN [ROUNDS] [OUT]
# Runs bench/route-scale.py (scale at 10,000 routes, hosts shape; new route
# live at 3,000 routes) for each binary. Only 127.0.0.1 is used; every
# process is started and stopped by PID (by route-scale.py). Not part of
# scripts/test or CI.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${1:?base binary}"; NEW="${2:?new binary}"; ROUNDS="${3:-2}"
OUT="${4:-/tmp/portcullis-route-scale-sbs.$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  for which in base new; do
    if [ "$which" = base ]; then bin="$BASE"; else bin="$NEW"; fi
    echo "== round $round $which $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.md"
    timeout 900 python3 "$HERE/bench/route-scale.py" --phases scale,propagate --routes 10000 \
      --shapes hosts --prop-routes 3000 --trials 20 --changes 5 --wrk-seconds 3 --bin "$bin" \
      --out "$OUT/$which-$round" > "$OUT/$which-$round.md" 2> "$OUT/$which-$round.err"
    tee -a "$OUT/summary.md" < "$OUT/$which-$round.md"
  done
done
echo "results: $OUT"
