#!/usr/bin/env bash
# Starts a local Kubernetes control plane on loopback: etcd, kube-apiserver
# (RBAC, service-account token signing), kube-controller-manager (namespace,
# garbage collector, deployment/replicaset, endpointslice, serviceaccount and
# root-CA publisher controllers) and the node agent (testenv/agent), which
# runs Pods as local processes. Writes $TESTENV_STATE/kubeconfig (cluster
# admin) and records every PID it starts in $TESTENV_STATE/pids; testenv/down.sh
# stops exactly those.
#
#   TESTENV_STATE      state directory (default /tmp/portcullis-testenv)
#   TESTENV_PORT_BASE  etcd client port; etcd peer, apiserver, kcm and the node agent's kubelet endpoint use the next four (default 32379)
#   TESTENV_POD_NET    /24 whose 254 host addresses are added to the loopback
#                      interface as Pod IPs (default 198.18.0.0/24, a range
#                      reserved for network testing); down.sh removes them.
#                      (127.0.0.0/8 cannot be used: the API server refuses
#                      loopback addresses in EndpointSlices.)
#   TESTENV_IMAGES     extra image=binary entries for the node agent (comma separated)
#   PORTCULLIS_BIN     the portcullis binary (default target/release/portcullis)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
state="${TESTENV_STATE:-/tmp/portcullis-testenv}"
base="${TESTENV_PORT_BASE:-32379}"
etcd_port=$base; peer_port=$((base + 1)); api_port=$((base + 2)); kcm_port=$((base + 3)); kubelet_port=$((base + 4))
portcullis_bin="${PORTCULLIS_BIN:-$repo/target/release/portcullis}"

if [ -f "$state/pids" ] && [ -s "$state/pids" ]; then
  echo "testenv: already running ($state/pids); run testenv/down.sh first" >&2
  exit 1
fi
bin="$("$here/build.sh" ${TESTENV_PROGRAMS:-})"
rm -rf "$state"
mkdir -p "$state"/{pki,logs,etcd}
: >"$state/pids"

# --- Pod IPs: addresses of the loopback interface (reachable from this host only) ----
pod_net="${TESTENV_POD_NET:-198.18.0.0/24}"
net3="${pod_net%.*}"
if ip -o addr show dev lo | grep -q " $net3\.[0-9]*/32"; then
  echo "testenv: $pod_net addresses are already on lo (another testenv?); set TESTENV_POD_NET" >&2
  exit 1
fi
for i in $(seq 1 254); do echo "addr add $net3.$i/32 dev lo"; done >"$state/addresses.batch"
ip -batch "$state/addresses.batch"
echo "$pod_net" >"$state/pod-net"
pki="$state/pki"

# --- certificates -------------------------------------------------------------
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 30 -subj "/CN=portcullis-testenv-ca"
cert() { # name subject [san]
  local name="$1" subj="$2" san="${3:-}"
  ossl req -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subj"
  local ext="$pki/$name.ext"
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi; } >"$ext"
  ossl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -out "$pki/$name.crt" -days 30 -extfile "$ext"
}
cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
cert admin "/O=system:masters/CN=testenv-admin"
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

kubeconfig() { # file user
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: testenv
  context: {cluster: testenv, user: $2}
current-context: testenv
KC
}
kubeconfig "$state/kubeconfig" admin

start() { # name cmd...
  local name="$1"; shift
  setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >>"$state/pids"
}

# --- etcd -------------------------------------------------------------------------
start etcd "$bin/etcd" --name testenv --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "testenv=http://127.0.0.1:$peer_port" --listen-metrics-urls "" \
  --unsafe-no-fsync --quota-backend-bytes 2147483648

# --- kube-apiserver -----------------------------------------------------------------
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$state/pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode RBAC \
  --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
  --enable-priority-and-fairness=false --profiling=false \
  --endpoint-reconciler-type none --kubelet-preferred-address-types InternalIP

kc() { KUBECONFIG="$state/kubeconfig" "$@"; }
echo "testenv: waiting for kube-apiserver on 127.0.0.1:$api_port" >&2
for i in $(seq 1 240); do
  if curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then break; fi
  if [ "$i" = 240 ]; then echo "testenv: kube-apiserver not ready after 120s; see $state/logs" >&2; exit 1; fi
  sleep 0.5
done

# --- kube-controller-manager ----------------------------------------------------------
if [ -x "$bin/kube-controller-manager" ]; then
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$state/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --leader-elect=false \
    --controllers namespace-controller,garbage-collector-controller,deployment-controller,replicaset-controller,endpointslice-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,pod-garbage-collector-controller \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-service-endpoint-syncs 10
fi

# --- node agent --------------------------------------------------------------------
images="ghcr.io/portcullis-dev/portcullis=$portcullis_bin,portcullis=$portcullis_bin,registry.k8s.io/gateway-api/echo-basic=$bin/echo-basic,registry.k8s.io/coredns/coredns=$bin/coredns${TESTENV_IMAGES:+,$TESTENV_IMAGES}"
start node-agent "$bin/node-agent" --kubeconfig "$state/kubeconfig" --state "$state/node" \
  --images "$images" --preload "$bin/libpodbind.so" --pod-net "$pod_net" \
  --apiserver "127.0.0.1:$api_port" --ca "$pki/ca.crt" --kubelet-port "$kubelet_port"

echo "testenv: waiting for the node" >&2
for i in $(seq 1 120); do
  if curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$api_port/api/v1/nodes/testenv-node" 2>/dev/null | grep -q '"type": "Ready"'; then break; fi
  if [ "$i" = 120 ]; then echo "testenv: node not registered after 60s; see $state/logs/node-agent.log" >&2; exit 1; fi
  sleep 0.5
done
echo "testenv: up; KUBECONFIG=$state/kubeconfig" >&2
echo "$state/kubeconfig"
