#!/usr/bin/env bash
# Portcullis side by side with nginx and HAProxy, in one run, from this repository alone.
#
#   bench/sbs.sh [--quick] [--no-install] [bench/sbs.py options...]
#   bench/sbs.sh --help          (all options of bench/sbs.py)
#
# Rows (BENCHMARKS.md): HTTP/1.1 keep-alive rps, p50/p99 at saturation and proxy CPU µs per
# request (from /proc/PID/stat utime+stime deltas); h2c and HTTPS/h2 rps (h2load); TLS
# handshakes per second with a new connection per request, full and resumed (openssl s_time);
# instructions per request (valgrind --tool=callgrind, two request counts' difference) and
# system calls per request (strace -c -f, same) for Portcullis, nginx and HAProxy. A direct
# (no proxy) h1 row is measured too. Medians of --reps runs [3], targets interleaved in
# every repetition, ratios to nginx and HAProxy from the same run. p99 at a fixed offered
# load needs an open-loop generator: measured only when `oha` is on PATH.
#
# Layout: client on cpu 0; proxy AND backend (nginx returning a fixed 200) pinned together on
# cpu 1; one worker / thread per proxy (Portcullis --workers 1 --access-log off, nginx
# worker_processes 1 with upstream keepalive and access_log off, HAProxy nbthread 1 with
# http-reuse safe and no log); "portcullis-log" is the same binary with its default access
# log, in the h1, callgrind and strace phases (--targets to choose). Only 127.0.0.1 is used
# (ports --base-port .. +14, default 19080); every process is stopped by its PID; every client
# run is bounded by `timeout`, the whole run by --max-seconds [3000]. Each run records the CPU
# other processes took on the proxies' cpu (foreign_pct in results.jsonl) and is redone once
# (--retries) above --quiet-pct [10] %.
#
# --quick: --reps 1 --duration 5 --tls-seconds 3 (a first look).
# --no-install: do not apt-get install what is missing (nginx haproxy wrk nghttp2-client
#   curl valgrind strace).
# The Portcullis binary is $CARGO_TARGET_DIR/release/portcullis (or target/release/portcullis),
# or --bin PATH; build it first: cargo build --release -p portcullis (bench/run.sh does).
# Not part of scripts/test or CI: every figure depends on timing and the machine.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTALL=1; ARGS=()
for a in "$@"; do
  case "$a" in
    --quick) ARGS+=(--reps 1 --duration 5 --tls-seconds 3);;
    --no-install) INSTALL=0;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d'; echo; exec python3 "$HERE/sbs.py" --help;;
    *) ARGS+=("$a");;
  esac
done

declare -A PKG=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk [h2load]=nghttp2-client [curl]=curl
                [openssl]=openssl [taskset]=util-linux [valgrind]=valgrind [callgrind_control]=valgrind
                [strace]=strace [python3]=python3)
MISSING=()
for tool in "${!PKG[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || MISSING+=("${PKG[$tool]}")
done
if [ ${#MISSING[@]} -gt 0 ]; then
  mapfile -t MISSING < <(printf '%s\n' "${MISSING[@]}" | sort -u)
  if [ "$INSTALL" = 1 ] && command -v apt-get >/dev/null; then
    SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
    echo "installing: ${MISSING[*]}" >&2
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${MISSING[@]}" >&2 \
      || { "${SUDO[@]}" apt-get update >&2 && "${SUDO[@]}" apt-get install -y --no-install-recommends "${MISSING[@]}" >&2; }
  else
    echo "missing packages: ${MISSING[*]} (apt-get install them, or drop --no-install)" >&2
    exit 2
  fi
fi
exec python3 "$HERE/sbs.py" "${ARGS[@]}"
