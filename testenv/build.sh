#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager)
# and the Gateway API test programs (echo-basic, the conformance test binary)
# once per machine, cached outside the repository by version:
#   ${PORTCULLIS_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-testenv}/<group>-<version>-<hash>/
# where <hash> covers the pinned go.mod/go.sum files (and the node agent's
# sources for its group), so a version bump rebuilds and an unchanged pin is a
# no-op. Prints a directory of symlinks to the programs on stdout.
#   testenv/build.sh [program...]   (default: everything up.sh needs;
#   also: conformance.test, the upstream suite's test binary, kubectl and helm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache_root="${PORTCULLIS_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-testenv}"

k8s_version="$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go.mod")"
hash() { cat "$@" | sha256sum | cut -c1-12; }
modver() { awk -v m="$2" '($1==m){print $2} ($1=="require" && $2==m){print $3}' "$1" | head -1; }
gw_version="$(modver "$here/gwapi/go.mod" sigs.k8s.io/gateway-api/conformance)"
# One cache directory per group of programs, keyed by what they are built from,
# so changing the node agent does not rebuild kube-apiserver.
kube_dir="$cache_root/k8s-$k8s_version-$(hash "$here/go.mod" "$here/go.sum")"
# (bump echo_patch when the echo-basic listen-address patch below changes)
echo_patch=2
gw_dir="$cache_root/gwapi-$gw_version-$(hash "$here/gwapi/go.mod" "$here/gwapi/go.sum")-p$echo_patch"
agent_dir="$cache_root/agent-$(hash "$here/go.mod" "$here/go.sum" "$here"/agent/*.go "$here"/podbind/*.c)"
kubectl_dir="$cache_root/kubectl-$(modver "$here/kubectl/go.mod" k8s.io/kubectl)-$(hash "$here/kubectl/go.mod" "$here/kubectl/go.sum" "$here/kubectl/main.go")"
helm_dir="$cache_root/helm-$(modver "$here/helm/go.mod" helm.sh/helm/v4)-$(hash "$here/helm/go.mod" "$here/helm/go.sum" "$here/helm/main.go")"
coredns_dir="$cache_root/coredns-$(modver "$here/coredns/go.mod" github.com/coredns/coredns)-$(hash "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go")"
# The bin directory printed at the end holds symlinks to the cached programs.
bin="$cache_root/bin-$(echo "$here" | sha256sum | cut -c1-12)"
mkdir -p "$kube_dir" "$gw_dir" "$agent_dir" "$coredns_dir" "$kubectl_dir" "$helm_dir" "$bin"
export GOFLAGS="${GOFLAGS:--trimpath}"
build() { # out name dir pkg
  local out="$1" name="$2" dir="$3" pkg="$4"
  ln -sfn "$out/$name" "$bin/$name"
  if [ -x "$out/$name" ]; then return; fi
  local t0=$SECONDS
  echo "testenv: building $name ($pkg)" >&2
  (cd "$dir" && nice -n "${NICE:-10}" go build -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "testenv: built $name in $((SECONDS - t0))s" >&2
}
# echo-basic binds the wildcard address; every testenv pod shares the host
# network, so it is built with one change: its listen addresses start with
# $TESTENV_POD_IP, which the node agent sets (unset: the upstream behaviour).
# The change is made to a copy of the module (the module cache is read-only),
# used through a temporary -modfile with a replace directive.
build_echo() {
  local name=echo-basic
  ln -sfn "$gw_dir/$name" "$bin/$name"
  if [ -x "$gw_dir/$name" ]; then return; fi
  local t0=$SECONDS
  echo "testenv: building $name (sigs.k8s.io/gateway-api/conformance/echo-basic, listen address patched)" >&2
  local src tmp f
  src="$(cd "$here/gwapi" && go mod download -json sigs.k8s.io/gateway-api/conformance | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  tmp="$(mktemp -d)"
  cp -r "$src" "$tmp/conformance"
  chmod -R u+w "$tmp/conformance"
  for f in $(grep -rlE 'Sprintf\(":%s"|"0\.0\.0\.0:%d"|":"\+port' "$tmp/conformance/echo-basic" --include='*.go' | grep -v _test.go); do
    sed -i -E 's/Sprintf\(":%s"/Sprintf(os.Getenv("TESTENV_POD_IP")+":%s"/g; s/Sprintf\("0\.0\.0\.0:%d"/Sprintf(os.Getenv("TESTENV_POD_IP")+":%d"/g; s/"udp", ":"\+port/"udp", os.Getenv("TESTENV_POD_IP")+":"+port/g' "$f"
    grep -q '^[[:space:]]*"os"$' "$f" || sed -i '0,/^import (/s//import (\n\t"os"/' "$f"
  done
  cp "$here/gwapi/go.mod" "$tmp/go.mod"
  cp "$here/gwapi/go.sum" "$tmp/go.sum"
  echo "replace sigs.k8s.io/gateway-api/conformance => $tmp/conformance" >>"$tmp/go.mod"
  (cd "$here/gwapi" && nice -n "${NICE:-10}" go build -modfile "$tmp/go.mod" -o "$gw_dir/$name.tmp" sigs.k8s.io/gateway-api/conformance/echo-basic)
  rm -rf "$tmp"
  mv "$gw_dir/$name.tmp" "$gw_dir/$name"
  echo "testenv: built $name in $((SECONDS - t0))s" >&2
}
build_test() { # out name dir pkg
  local out="$1" name="$2" dir="$3" pkg="$4"
  ln -sfn "$out/$name" "$bin/$name"
  if [ -x "$out/$name" ]; then return; fi
  local t0=$SECONDS
  echo "testenv: building test binary $name ($pkg)" >&2
  (cd "$dir" && nice -n "${NICE:-10}" go test -c -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"
  echo "testenv: built $name in $((SECONDS - t0))s" >&2
}
want="${*:-etcd kube-apiserver kube-controller-manager libpodbind.so node-agent echo-basic coredns}"
for w in $want; do
  case "$w" in
    etcd) build "$kube_dir" etcd "$here" go.etcd.io/etcd/server/v3 ;;
    kube-apiserver) build "$kube_dir" kube-apiserver "$here" k8s.io/kubernetes/cmd/kube-apiserver ;;
    kube-controller-manager) build "$kube_dir" kube-controller-manager "$here" k8s.io/kubernetes/cmd/kube-controller-manager ;;
    echo-basic) build_echo ;;
    libpodbind.so)
      ln -sfn "$agent_dir/libpodbind.so" "$bin/libpodbind.so"
      if [ ! -f "$agent_dir/libpodbind.so" ]; then
        cc -shared -fPIC -O2 -o "$agent_dir/libpodbind.so.tmp" "$here/podbind/podbind.c" -ldl
        mv "$agent_dir/libpodbind.so.tmp" "$agent_dir/libpodbind.so"
      fi ;;
    node-agent) build "$agent_dir" node-agent "$here" ./agent ;;
    coredns) build "$coredns_dir" coredns "$here/coredns" . ;;
    kubectl) build "$kubectl_dir" kubectl "$here/kubectl" . ;;
    helm) build "$helm_dir" helm "$here/helm" . ;;
    conformance.test) build_test "$gw_dir" conformance.test "$here/gwapi" sigs.k8s.io/gateway-api/conformance ;;
    *) echo "testenv: unknown program $w" >&2; exit 2 ;;
  esac
done
echo "$bin"
