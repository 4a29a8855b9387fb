#!/usr/bin/env bash
# Side-by-side cost of policies on the request path: the same Portcullis
# binary, backend and load, with
#   none      no policy
#   local     a BackendTrafficPolicy local rate limit that never triggers
#             (one rule, plus a Distinct-per-client rule: two buckets per request)
#   global    a global (Redis) rate limit that never triggers (one Redis round trip per request)
#   jwt       a SecurityPolicy JWT (RS256, local JWKS) every request passes
#   metrics   no policy, /metrics scraped every second during the run (metrics are always on)
# Each variant runs in its own `portcullis run --workers 1`; wrk (1 thread, 32
# connections, keep-alive) runs REPS rounds of DURATION seconds, the variants
# interleaved in every round so that the machine's noise hits all of them
# alike; the median requests/s of each and its ratio to `none` are printed,
# and the median CPU time per request of each gateway process (utime+stime
# from /proc/PID/stat over the round) and its ratio to `none`.
#
#   bench/policies.sh [REPS] [DURATION]      defaults 3 and 10
#
# Needs: a release build (cargo build --release -p portcullis -p portcullis-conformance),
# wrk, redis-server, openssl. Everything listens on 127.0.0.1 and is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${1:-3}"
DURATION="${2:-10}"
BIN="${CARGO_TARGET_DIR:-target}/release"
RUN="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Backend: portcullis-echo (the same for every variant).
BPORT=$(free_port); BH2=$(free_port)
"$BIN/portcullis-echo" --bind 127.0.0.1 --http-port "$BPORT" --h2c-port "$BH2" --pod-name bench --namespace default >/dev/null 2>&1 &
PIDS+=($!)
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
PIDS+=($!)

# An RS256 key and its JWKS, and a token valid for a day.
openssl genrsa -out "$RUN/key.pem" 2048 2>/dev/null
python3 - "$RUN" <<'PY'
import base64, json, subprocess, sys, time
run = sys.argv[1]
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
mod = subprocess.run(["openssl", "rsa", "-in", f"{run}/key.pem", "-noout", "-modulus"], capture_output=True, text=True).stdout.strip().split("=")[1]
n = b64(bytes.fromhex(mod))
jwks = {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"}]}
open(f"{run}/jwks.json", "w").write(json.dumps(jwks))
header = b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
claims = b64(json.dumps({"iss": "https://bench.example", "sub": "bench", "exp": int(time.time()) + 86400}).encode())
signing = f"{header}.{claims}".encode()
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{run}/key.pem"], input=signing, capture_output=True).stdout
open(f"{run}/token", "w").write(f"{header}.{claims}.{b64(sig)}")
PY

policy() {
  case "$1" in
    none|metrics) ;;
    local) cat <<'Y'
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: rl, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: bench}]
  rateLimit:
    local:
      rules:
      - limit: {requests: 1000000000, unit: Second}
      - clientSelectors: [{sourceCIDR: {type: Distinct, value: 0.0.0.0/0}}]
        limit: {requests: 1000000000, unit: Second}
Y
    ;;
    global) cat <<'Y'
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: rl, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: bench}]
  rateLimit:
    global:
      rules:
      - limit: {requests: 1000000000, unit: Second}
Y
    ;;
    jwt)
      printf -- '---\napiVersion: portcullis.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: jwt, namespace: default}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: bench}]\n  jwt:\n    providers:\n    - name: bench\n      issuer: https://bench.example\n      localJWKS: {type: Inline, inline: %s}\n' "$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$RUN/jwks.json")"
    ;;
  esac
}

VARIANTS=(none local global jwt metrics)
declare -A PORT ADMIN GWPID
for v in "${VARIANTS[@]}"; do
  PORT[$v]=$(free_port); ADMIN[$v]=$(free_port)
  mkdir -p "$RUN/$v"
  cat > "$RUN/$v/gw.yaml" <<Y
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portcullis}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: default}
spec:
  gatewayClassName: portcullis
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners: [{name: h1, port: ${PORT[$v]}, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules: [{backendRefs: [{name: backend, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $BPORT}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
$(policy "$v")
Y
  "$BIN/portcullis" run --config "$RUN/$v" --admin "127.0.0.1:${ADMIN[$v]}" --workers 1 --log-level warn \
    --rate-limit-redis "redis://127.0.0.1:$RPORT" >"$RUN/$v.log" 2>&1 &
  PIDS+=($!)
  GWPID[$v]=$!
done
TOKEN=$(cat "$RUN/token")
for v in "${VARIANTS[@]}"; do
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  [ "$code" = 200 ] || { echo "variant $v does not answer 200 ($code)"; cat "$RUN/$v.log"; exit 1; }
done

declare -A RESULTS CPU
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{ split($0, a, ") "); split(a[2], f, " "); print (f[12] + f[13]) * 1000000 / hz }' "/proc/$1/stat"; }
for r in $(seq "$REPS"); do
  for v in "${VARIANTS[@]}"; do
    scrape=""
    if [ "$v" = metrics ]; then
      ( end=$((SECONDS + DURATION)); while [ $SECONDS -lt $end ]; do curl -s -o /dev/null "http://127.0.0.1:${ADMIN[$v]}/metrics"; sleep 1; done ) &
      scrape=$!
    fi
    c0=$(cpu_us "${GWPID[$v]}")
    out=$(wrk -t1 -c32 -d"${DURATION}s" -H "authorization: Bearer $TOKEN" "http://127.0.0.1:${PORT[$v]}/")
    c1=$(cpu_us "${GWPID[$v]}")
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    [ -n "$scrape" ] && wait "$scrape" || true
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -z "$non2xx" ] || { echo "variant $v: $non2xx non-2xx answers"; exit 1; }
    RESULTS[$v]="${RESULTS[$v]:-} $rps"
    per=$(python3 -c "print(f'{($c1 - $c0) / max($n, 1):.2f}')")
    CPU[$v]="${CPU[$v]:-} $per"
    echo "round $r $v: $rps req/s, $per us CPU/req"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${RESULTS[none]}" | median)
cbase=$(echo "${CPU[none]}" | median)
echo
echo "| variant | median req/s | vs none | median gateway CPU us/req | vs none |"
echo "|---|---|---|---|---|"
for v in "${VARIANTS[@]}"; do
  m=$(echo "${RESULTS[$v]}" | median)
  c=$(echo "${CPU[$v]}" | median)
  echo "| $v | $m | $(python3 -c "print(f'{$m/$base:.2f}x')") | $c | $(python3 -c "print(f'{$c/$cbase:.2f}x')") |"
done
