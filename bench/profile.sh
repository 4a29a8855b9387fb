#!/usr/bin/env bash
# Profile Portcullis under a fixed HTTP/1.1 load, laid out as bench/sbs.sh does
# (client on cpu 0, proxy and backend on cpu 1), with perf (cpu-clock samples).
#
#   bench/profile.sh [--seconds S] [--conns N] [--h2] [--callgraph] [--strace|--cpu] [--workers N] [--out DIR]
#   (--strace: count system calls per request with strace -c instead of sampling;
#    --cpu: no profiler, print requests/s and proxy CPU microseconds per request)
#
# Starts an nginx backend (fixed 200) and target/release/portcullis through
# bench/portcullis-candidate.sh, warms up, records `perf record` of the
# portcullis process while wrk (or h2load with --h2) runs, and prints the top of
# `perf report`. Only 127.0.0.1 is used; every process started is stopped by PID.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_RUN=5; CONNS=64; H2=0; CG=0; TOOL=perf; WORKERS=1; OUT=""; BASE=17080
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_RUN="$2"; shift 2;;
    --conns) CONNS="$2"; shift 2;;
    --h2) H2=1; shift;;
    --callgraph) CG=1; shift;;
    --strace) TOOL=strace; shift;;
    --cpu) TOOL=cpu; shift;;
    --workers) WORKERS="$2"; shift 2;;
    --out) OUT="$2"; shift 2;;
    --base-port) BASE="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
OUT="${OUT:-/tmp/portcullis-profile.$(date +%s)}"
mkdir -p "$OUT"/{logs,run,tmp}
BACKEND=$BASE; PORT=$((BASE+1)); H2PORT=$((BASE+2))
PIDS=()
cleanup() { for (( i=${#PIDS[@]}-1; i>=0; i-- )); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
cat > "$OUT/backend.conf" <<NGX
worker_processes 1;
error_log logs/backend-error.log warn;
pid run/backend.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path tmp/b; proxy_temp_path tmp/p; fastcgi_temp_path tmp/f; uwsgi_temp_path tmp/u; scgi_temp_path tmp/s;
  server { listen 127.0.0.1:$BACKEND backlog=4096; location / { return 200 "hello from backend\n"; } } }
NGX
taskset -c 1 nginx -p "$OUT/" -c "$OUT/backend.conf" -g 'daemon off;' > "$OUT/logs/backend.out" 2>&1 &
PIDS+=($!)
BENCH_WORKERS=$WORKERS taskset -c 1 "$HERE/bench/portcullis-candidate.sh" "$PORT" "$H2PORT" "$BACKEND" "$OUT" > "$OUT/logs/portcullis.out" 2>&1 &
PP=$!; PIDS+=($PP)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
load() { # seconds
  if [ "$H2" = 1 ]; then
    timeout -k 5 $(( $1 + 20 )) taskset -c 0 h2load -t1 -c16 -m10 -D"$1" "http://127.0.0.1:$H2PORT/"
  else
    timeout -k 5 $(( $1 + 20 )) taskset -c 0 wrk -t1 -c"$CONNS" -d"$1"s --latency "http://127.0.0.1:$PORT/"
  fi
}
load 2 > /dev/null
cpu_us() { local t=0 p; for p in /proc/"$PP"/task/*; do t=$(( t + $(awk '{print $14+$15}' "$p/stat") )); done; echo $(( t * 1000000 / $(getconf CLK_TCK) )); }
if [ "$TOOL" = cpu ]; then
  c0=$(cpu_us)
  load "$SECONDS_RUN" > "$OUT/load.txt"
  c1=$(cpu_us)
  n=$(awk '/requests in/{print $1} /succeeded/{print $8}' "$OUT/load.txt" | tr -d , | head -1)
  rps=$(awk '/Requests\/sec/{print $2} /finished in/{print $4}' "$OUT/load.txt" | tr -d , | head -1)
  p99=$(awk '$1=="99%"{print $2}' "$OUT/load.txt")
  echo "rps=$rps p99=${p99:--} requests=$n proxy_cpu_us_per_req=$(python3 -c "print(f'{($c1-$c0)/max(int(\"$n\" or 0),1):.2f}')")"
  exit 0
fi
if [ "$TOOL" = strace ]; then
  timeout -s INT "$SECONDS_RUN" strace -c -f -p "$PP" -o "$OUT/strace.txt" &
  ST=$!; sleep 0.5
  load "$SECONDS_RUN" | tee "$OUT/load.txt" | grep -E 'requests in|succeeded' || true
  wait "$ST" || true
  head -25 "$OUT/strace.txt"
  exit 0
fi
CGOPT=(); [ "$CG" = 1 ] && CGOPT=(--call-graph dwarf,16384)
perf record -F 2999 -e cpu-clock "${CGOPT[@]}" -p "$PP" -o "$OUT/perf.data" -- sleep "$SECONDS_RUN" > "$OUT/logs/perf.out" 2>&1 &
PERF=$!
load "$SECONDS_RUN" | tee "$OUT/load.txt" | grep -E 'Requests/sec|req/s|99%' || true
wait "$PERF" || true
perf report -i "$OUT/perf.data" --no-children --stdio --percent-limit 0.7 ${CG:+} 2>/dev/null \
  | grep -v '^$' | head -120 > "$OUT/report.txt" || true
cat "$OUT/report.txt"
echo "perf data: $OUT/perf.data"
