#!/usr/bin/env bash
# Stops exactly the processes testenv/up.sh recorded (and the pods the node
# agent started, which it records in $TESTENV_STATE/node/pids), by PID.
set -uo pipefail
state="${TESTENV_STATE:-/tmp/portcullis-testenv}"
stop_list() { # file
  [ -f "$1" ] || return 0
  # Newest first: the node agent and its pods before the control plane.
  tac "$1" | while read -r pid name; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null; fi
  done
  for _ in $(seq 1 50); do
    alive=0
    while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$1"
    [ $alive = 0 ] && break
    sleep 0.2
  done
  while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then echo "testenv: killing $name ($pid)" >&2; kill -KILL "$pid" 2>/dev/null; fi
  done <"$1"
  : >"$1"
}
# The agent stops its pods on SIGTERM; pods it could not stop are listed here.
stop_list "$state/pids"
stop_list "$state/node/pids"
# The Pod IPs up.sh added to the loopback interface.
if [ -f "$state/addresses.batch" ]; then
  sed 's/^addr add/addr del/' "$state/addresses.batch" | ip -force -batch - 2>/dev/null
  rm -f "$state/addresses.batch"
fi
echo "testenv: down" >&2
