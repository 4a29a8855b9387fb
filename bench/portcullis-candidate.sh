#!/usr/bin/env bash
# Candidate for an external proxy-bench harness (bench/sbs.sh does not use it; bench/profile.sh does):
#   bench/portcullis-candidate.sh {PORT} {H2PORT} {BACKEND_PORT} {RUNDIR}
# Writes a Gateway (HTTP on PORT, HTTP on H2PORT: both serve HTTP/1.1 and h2c prior
# knowledge), an HTTPRoute, a Service and an EndpointSlice for the backend into RUNDIR,
# then runs target/release/portcullis (or $PORTCULLIS_BIN) in the foreground with BENCH_WORKERS workers,
# access log off as the references run (BENCH_ACCESS_LOG=text for `run`'s default, which has been
# on since commit 2c9c6b0; rows measured with this script before that had no access log to turn off).
set -euo pipefail
PORT="$1"; H2PORT="$2"; BACKEND_PORT="$3"; RUNDIR="$4"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$RUNDIR/config"
cat > "$RUNDIR/config/bench.yaml" <<YAML
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
  listeners:
    - {name: h1, port: $PORT, protocol: HTTP}
    - {name: h2, port: $H2PORT, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench, namespace: default}
spec:
  parentRefs: [{name: bench}]
  rules:
    - backendRefs: [{name: backend, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: $BACKEND_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: $BACKEND_PORT}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
YAML
ADMIN_PORT=$((PORT + 1000))
exec "${PORTCULLIS_BIN:-$HERE/target/release/portcullis}" run --config "$RUNDIR/config" --admin "127.0.0.1:$ADMIN_PORT" \
  --workers "${BENCH_WORKERS:-1}" --log-level warn --access-log "${BENCH_ACCESS_LOG:-off}"
