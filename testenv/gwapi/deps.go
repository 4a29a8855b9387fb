// Package gwapi pins the upstream Gateway API conformance module (v1.6.1):
// its echo server (echo-basic) and its test binary are built from here,
// unchanged, with the module's own dependency versions.
package gwapi

import _ "sigs.k8s.io/gateway-api/conformance"
