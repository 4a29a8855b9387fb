#!/usr/bin/env python3
"""Generate crates/portcullis-source/crds/portcullis.dev_clienttrafficpolicies.yaml.

The schema lists only the fields Portcullis implements: anything else is an
unknown field and is rejected. Field names follow Envoy Gateway's
gateway.envoyproxy.io/v1alpha1 ClientTrafficPolicy. Run from the repository
root; the Helm chart's copy (deploy/helm/portcullis/crds/) is written too.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crdgen import DURATION, arr, obj, s, target_ref, write_crd  # noqa: E402

KINDS = ["Gateway"]
QUANTITY = r"^[0-9]{1,10}(Ki|Mi|Gi)?$"

x_forwarded_for = obj({
    "numTrustedHops": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 64,
                       "description": "The client is the N-th address from the right of X-Forwarded-For "
                                      "(the N proxies closest to the gateway are trusted)."},
    "trustedCIDRs": arr(s("A CIDR, e.g. `10.0.0.0/8`.", minLength=1, maxLength=64),
                        "Peers in these ranges are trusted proxies: X-Forwarded-For is walked from the right "
                        "and the first address not in them is the client.", min_items=1, max_items=32),
}, desc="Trust X-Forwarded-For from some proxies.", rules=[
    ("has(self.numTrustedHops) != has(self.trustedCIDRs)", "only one of numTrustedHops or trustedCIDRs must be set"),
    ("!has(self.trustedCIDRs) || self.trustedCIDRs.all(c, isCIDR(c))",
     "trustedCIDRs must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32"),
])

custom_header = obj({
    "name": s("The header holding the client address (set by a trusted proxy in front of the gateway).",
              minLength=1, maxLength=255, pattern=r"^[A-Za-z0-9-]+$"),
    "failClosed": {"type": "boolean", "default": False,
                   "description": "Answer 403 when the header is missing or not an address "
                                  "(default: the TCP peer is the client)."},
}, ["name"], desc="Take the client address from a header.")

spec = obj({
    "targetRef": target_ref(KINDS),
    "targetRefs": arr(target_ref(KINDS), "The Gateways, or listeners of them (`sectionName`), this policy applies to.",
                      max_items=16),
    "clientIPDetection": obj({
        "xForwardedFor": x_forwarded_for,
        "customHeader": custom_header,
    }, desc="Where the client address comes from (default: the TCP peer, or the PROXY protocol's source).",
        rules=[("!(has(self.xForwardedFor) && has(self.customHeader))",
                "customHeader cannot be used in conjunction with xForwardedFor")]),
    "enableProxyProtocol": {"type": "boolean", "default": False,
                            "description": "Every connection must start with a PROXY protocol v1 or v2 header; "
                                           "its source address becomes the peer address. A connection without "
                                           "a valid header is closed."},
    "timeout": obj({
        "http": obj({
            "requestReceivedTimeout": {**DURATION, "description":
                                       "Time allowed for a whole request (head and body) to arrive; past it "
                                       "the request is answered 408 and the connection closed."},
            "idleTimeout": {**DURATION, "description":
                            "How long a connection with no request in flight stays open (default: --idle-timeout)."},
        }),
    }, desc="Timeouts."),
    "connection": obj({
        "connectionLimit": obj({
            "value": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 10000000,
                      "description": "Open client connections allowed on the port; past it new connections are "
                                     "closed at once."},
        }, ["value"], desc="A limit on open connections."),
        "bufferLimit": s("Largest request body buffered in memory, a quantity such as `32Ki` or `1Mi` "
                         "(default: --buffer-body-bytes); larger bodies are streamed.",
                         maxLength=16, pattern=QUANTITY),
    }, desc="Connection settings."),
    "headers": obj({
        "withUnderscoresAction": s("What to do with a request header whose name holds `_`: `Allow` (default), "
                                   "`RejectRequest` (400) or `DropHeader`.",
                                   enum=["Allow", "RejectRequest", "DropHeader"]),
        "preserveXRequestID": {"type": "boolean",
                               "description": "Deprecated form of `requestID`: true is `PreserveOrGenerate`, "
                                              "false is `Generate`."},
        "requestID": s("`X-Request-ID` handling: `PreserveOrGenerate`, `Preserve`, `Generate` or `Disable` "
                       "(not set: the client's header passes through untouched).",
                       enum=["PreserveOrGenerate", "Preserve", "Generate", "Disable"]),
    }, desc="Header handling.", rules=[
        ("!(has(self.preserveXRequestID) && has(self.requestID))", "preserveXRequestID and requestID cannot both be set."),
    ]),
    "http1": obj({
        "enableTrailers": {"type": "boolean",
                           "description": "Proxy HTTP/1 trailers (true) or drop them in both directions for "
                                          "HTTP/1.1 clients (false). Not set: trailers pass through, as without "
                                          "a policy."},
        "preserveHeaderCase": {"type": "boolean",
                               "description": "HTTP/1.1 header names keep the case the client sent when "
                                              "forwarded to the backend, and the case the backend sent when "
                                              "returned to the client (default false: lower-cased)."},
    }, desc="HTTP/1.1 settings (`enableTrailers`, `preserveHeaderCase`; `http10` is not implemented)."),
    "http2": obj({
        "maxConcurrentStreams": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 2147483647,
                                 "description": "Streams a client may have open on one connection (default 256)."},
        "initialStreamWindowSize": s("Initial stream flow-control window, 64Ki to 2Gi (a quantity such as `1Mi`).",
                                     maxLength=16, pattern=QUANTITY),
        "initialConnectionWindowSize": s("Initial connection flow-control window, 64Ki to 2Gi.",
                                         maxLength=16, pattern=QUANTITY),
    }, desc="HTTP/2 settings."),
    "tls": obj({
        "minVersion": s("Lowest TLS version accepted: `Auto` (1.2), `1.2` or `1.3`.", enum=["Auto", "1.2", "1.3"]),
        "maxVersion": s("Highest TLS version accepted: `Auto` (1.3), `1.2` or `1.3`.", enum=["Auto", "1.2", "1.3"]),
        "ciphers": arr(s("A cipher suite, by IANA name (e.g. `TLS_AES_128_GCM_SHA256`) or OpenSSL name "
                         "(e.g. `ECDHE-RSA-AES128-GCM-SHA256`).", minLength=1, maxLength=64),
                       "Cipher suites allowed (default: every suite of the build).", min_items=1, max_items=32),
        "alpnProtocols": arr(s("`h2` or `http/1.1`.", enum=["h2", "http/1.1"]),
                             "ALPN protocols offered, in order of preference (default: `h2`, `http/1.1`).",
                             min_items=1, max_items=2),
    }, desc="TLS settings of HTTPS listeners.", rules=[
        ("!(has(self.minVersion) && has(self.maxVersion) && self.minVersion == '1.3' && self.maxVersion == '1.2')",
         "minVersion must not be above maxVersion"),
    ]),
    "path": obj({
        "escapedSlashesAction": s("What to do with `%2F`, `%2f`, `%5C`, `%5c` in the request path: "
                                  "`KeepUnchanged` (default: kept encoded, not separators), `RejectRequest` (400), "
                                  "`UnescapeAndRedirect` (307 to the path with them unescaped to `/`) or "
                                  "`UnescapeAndForward` (unescaped to `/`, then routed and forwarded).",
                                  enum=["KeepUnchanged", "RejectRequest", "UnescapeAndRedirect",
                                        "UnescapeAndForward"]),
        "disableMergeSlashes": {"type": "boolean",
                                "description": "Keep adjacent slashes in the request path (default false: `//` "
                                               "is merged into `/` before routing and forwarding)."},
    }, desc="Request path normalisation."),
}, desc="ClientTrafficPolicySpec: the fields Portcullis implements (others are rejected).",
    rules=[("has(self.targetRef) || has(self.targetRefs)", "either targetRef or targetRefs must be set")])

write_crd("ClientTrafficPolicy", "clienttrafficpolicies", "ctp", spec,
          "ClientTrafficPolicy: how the gateway treats the clients of its listeners (GEP-713 policy).",
          "scripts/gen-clienttrafficpolicy-crd.py")
