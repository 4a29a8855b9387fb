#!/usr/bin/env python3
"""Generate crates/portcullis-source/crds/portcullis.dev_backendtrafficpolicies.yaml.

The schema lists only the fields Portcullis implements: anything else is an
unknown field and is rejected. Field names follow Envoy Gateway's
gateway.envoyproxy.io/v1alpha1 BackendTrafficPolicy. Run from the repository
root; the Helm chart's copy (deploy/helm/portcullis/crds/) is written too.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crdgen import DURATION, HEADER_NAME, arr, obj, s, target_ref, write_crd  # noqa: E402

KINDS = ["Gateway", "HTTPRoute", "GRPCRoute", "TCPRoute"]

header_match = obj({
    "type": s("`Exact` (default), `RegularExpression` (RE2 syntax, whole value) or `Distinct` (one bucket per value).",
              enum=["Exact", "RegularExpression", "Distinct"], default="Exact"),
    "name": {**HEADER_NAME, "description": "Header name (case-insensitive)."},
    "value": s("The value; not with `Distinct`.", maxLength=1024),
    "invert": {"type": "boolean", "default": False, "description": "Select requests that do not match; not with `Distinct`."},
}, ["name"], rules=[
    ("self.type == 'Distinct' ? (!has(self.value) && !self.invert) : has(self.value)",
     "value is required, except with type Distinct, which takes neither value nor invert"),
])

method_match = obj({
    "value": s("An HTTP method.", enum=["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]),
    "invert": {"type": "boolean", "default": False, "description": "Select requests of any other method."},
}, ["value"])

path_match = obj({
    "type": s("`PathPrefix` (default, by path element), `Exact` or `RegularExpression`.",
              enum=["Exact", "PathPrefix", "RegularExpression"], default="PathPrefix"),
    "value": s("The path.", minLength=1, maxLength=1024, default="/"),
    "invert": {"type": "boolean", "default": False, "description": "Select requests that do not match."},
}, ["value"], rules=[("self.type == 'RegularExpression' || self.value.startsWith('/')", "value must be an absolute path")])

source_match = obj({
    "type": s("`Exact` (default: the range is one bucket) or `Distinct` (one bucket per client address).",
              enum=["Exact", "Distinct"], default="Exact"),
    "value": s("A CIDR, e.g. `192.168.0.0/16` or `2001:db8::/32`.", minLength=1, maxLength=64),
}, ["value"], rules=[("isCIDR(self.value)", "value must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32")])

selector = obj({
    "headers": arr(header_match, "Request headers; all must match.", max_items=16),
    "methods": arr(method_match, "Methods; any matches.", max_items=16),
    "path": path_match,
    "sourceCIDR": source_match,
}, desc="Conditions on the request; every one given must hold.", rules=[
    ("has(self.headers) || has(self.methods) || has(self.path) || has(self.sourceCIDR)",
     "at least one of headers, methods, path or sourceCIDR must be specified"),
])

rule = obj({
    "clientSelectors": arr(selector, "Which requests the rule counts (all selectors must hold; none: every request).",
                           max_items=8),
    "limit": obj({
        "requests": {"type": "integer", "format": "int64", "minimum": 1, "maximum": 1000000000,
                     "description": "Requests per unit."},
        "unit": s("`Second`, `Minute`, `Hour`, `Day`, `Month` (30 days) or `Year` (365 days).",
                  enum=["Second", "Minute", "Hour", "Day", "Month", "Year"]),
    }, ["requests", "unit"], desc="The limit: a token bucket of `requests` tokens refilled over one unit."),
    "cost": obj({
        "request": obj({
            "from": s("`Number` (the only source supported).", enum=["Number"]),
            "number": {"type": "integer", "format": "int64", "minimum": 0, "maximum": 1000000000,
                       "description": "Tokens a request takes (0: check without taking)."},
        }, ["from", "number"], desc="What a request takes from the limit (default 1)."),
    }, desc="Cost of a request."),
    "shared": {"type": "boolean", "default": False,
               "description": "One bucket for every route rule of the policy's targets (default: one per route rule)."},
    "shadowMode": {"type": "boolean", "default": False,
                   "description": "Count and report (metrics, logs) but never refuse."},
}, ["limit"])

rules = obj({
    "rules": arr(rule, "Rules; every rule a request matches takes from its bucket, and the request is refused when one is empty.",
                 min_items=1, max_items=64),
}, ["rules"])

def dur(desc, **kw):
    return {**DURATION, "description": desc, **kw}


def count(desc, minimum=0, maximum=4294967295, **kw):
    return {"type": "integer", "format": "int64", "minimum": minimum, "maximum": maximum, "description": desc, **kw}


load_balancer = obj({
    "type": s("`LeastRequest` (the default without a policy: two random endpoints, the one with fewer requests in flight), "
              "`RoundRobin`, `Random` or `ConsistentHash`.",
              enum=["ConsistentHash", "LeastRequest", "Random", "RoundRobin"]),
    "consistentHash": obj({
        "type": s("`SourceIP` (the client address), `Header` (a request header's value) or `Cookie` "
                  "(a cookie's value; generated and set on the response when absent).",
                  enum=["SourceIP", "Header", "Cookie"]),
        "header": obj({"name": {**HEADER_NAME, "description": "Header name."}}, ["name"]),
        "cookie": obj({
            "name": s("Cookie name.", minLength=1, maxLength=256, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$"),
            "ttl": dur("Max-Age of a generated cookie; unset: a session cookie."),
        }, ["name"]),
        "tableSize": count("Maglev lookup table size, a prime (default 65537).", minimum=2, maximum=5000011,
                           default=65537),
    }, ["type"], desc="Maglev consistent hashing: adding or removing an endpoint moves few keys.",
        rules=[("self.type == 'Header' ? has(self.header) : !has(self.header)", "header is set with, and only with, type Header"),
               ("self.type == 'Cookie' ? has(self.cookie) : !has(self.cookie)", "cookie is set with, and only with, type Cookie")]),
    "slowStart": obj({
        "window": dur("The ramp: an endpoint that joined the backend (or that active health checks found healthy "
                      "again) gets a share of its traffic growing linearly from 10 % to all of it over this time."),
    }, ["window"], desc="Slow start (RoundRobin and LeastRequest only)."),
    "zoneAware": obj({
        "preferLocal": obj({
            "force": obj({
                "minEndpointsInZoneThreshold": count("Local endpoints in service needed to keep all the traffic "
                                                     "local (default 1).", minimum=1, maximum=4294967295),
            }, desc="Keep all the traffic in the local zone (while enough local endpoints are in service) rather "
                    "than spilling over to keep the load even."),
            "minEndpointsThreshold": count("Endpoints across all zones below which zone-aware routing is off "
                                           "(default 6).", minimum=1),
            "percentageEnabled": count("Share of requests considered for zone-aware routing, in percent "
                                       "(default 100).", maximum=100),
        }, desc="Prefer the endpoints of the proxy's zone (`--zone`, `PORTCULLIS_ZONE`)."),
    }, desc="Zone-aware routing (not with ConsistentHash)."),
}, ["type"], desc="How endpoints are chosen.",
    rules=[("self.type == 'ConsistentHash' ? has(self.consistentHash) : !has(self.consistentHash)",
            "consistentHash is set with, and only with, type ConsistentHash"),
           ("has(self.slowStart) ? self.type in ['RoundRobin', 'LeastRequest'] : true",
            "slowStart is only supported for RoundRobin and LeastRequest load balancers"),
           ("has(self.zoneAware) ? self.type != 'ConsistentHash' : true",
            "zoneAware is not supported with ConsistentHash")])

circuit_breaker = obj({
    "maxParallelRequests": count("Requests in flight to one backend of a route rule at once; past it, 503 at once (default 1024).",
                                 minimum=1, default=1024),
    "maxParallelRetries": count("Retries in flight to one backend of a route rule at once; past it, no retry (default 1024).",
                                minimum=0, default=1024),
    "maxConnections": count("Upstream HTTP/1.1 connections open to one backend of a route rule at once, in use or idle, "
                            "across worker threads (default 1024). A request that needs a connection past it waits "
                            "(see maxPendingRequests).", minimum=1, default=1024),
    "maxPendingRequests": count("Requests waiting for a connection at once (default 1024); past it, 503 at once. "
                                "A request waits at most the connect timeout.", minimum=0, default=1024),
    "maxRequestsPerConnection": count("Requests sent over one upstream connection; then it is closed "
                                      "(default: unlimited).", minimum=1),
}, desc="Limits that fail fast instead of queueing.")

passive = obj({
    "splitExternalLocalOriginErrors": {"type": "boolean", "default": False,
                                       "description": "Count local-origin failures (connect, reset, timeout) apart from 5xx answers."},
    "interval": dur("Ejections end on this time grid (default 3s).", default="3s"),
    "consecutiveLocalOriginFailures": count("Local-origin failures in a row that eject (split mode; default 5).", default=5),
    "consecutiveGatewayErrors": count("502, 503 and 504 answers (and local-origin failures unless split) in a row that eject (default 0: off).", default=0),
    "consecutive5XxErrors": count("5xx answers (and local-origin failures unless split) in a row that eject (default 5; 0: off).", default=5),
    "baseEjectionTime": dur("An ejection lasts this times the endpoint's number of ejections (default 30s).", default="30s"),
    "maxEjectionPercent": count("Most endpoints ejected at once, in percent (default 10; one may always be).", maximum=100, default=10),
}, desc="Outlier detection: endpoints that fail in a row get no traffic for a while. When every endpoint is ejected, traffic is spread over all of them (panic mode).")

payload = obj({
    "type": s("`Text` or `Binary`.", enum=["Text", "Binary"]),
    "text": s("The text.", maxLength=1024),
    "binary": s("The bytes, base64.", maxLength=2048, format="byte"),
}, ["type"], rules=[("self.type == 'Text' ? has(self.text) : has(self.binary)", "text is set with type Text, binary with type Binary")])

active = obj({
    "timeout": dur("Time allowed for one check (default 1s).", default="1s"),
    "interval": dur("Time between checks of an endpoint (default 3s).", default="3s"),
    "unhealthyThreshold": count("Failed checks in a row that make an endpoint unhealthy (default 3).", minimum=1, default=3),
    "healthyThreshold": count("Passed checks in a row that make it healthy again (default 1).", minimum=1, default=1),
    "type": s("`HTTP` or `TCP`.", enum=["HTTP", "TCP"]),
    "http": obj({
        "hostname": s("Host header (default: the endpoint's address).", maxLength=253),
        "path": s("Path requested.", minLength=1, maxLength=1024, pattern=r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]*$"),
        "method": s("Method (default GET).", enum=["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"]),
        "expectedStatuses": arr({"type": "integer", "minimum": 100, "maximum": 599}, "Statuses that pass (default [200]).", max_items=32),
        "expectedResponse": {**payload, "description": "Bytes the response body must contain (the first 64 KiB)."},
    }, ["path"]),
    "tcp": obj({
        "send": {**payload, "description": "Bytes sent after connecting."},
        "receive": {**payload, "description": "Bytes that must be received."},
    }),
}, ["type"], desc="Active health checks: each endpoint is probed; an unhealthy one gets no traffic (panic mode when all are). "
                   "Endpoints start healthy, also after a configuration change.",
    rules=[("self.type == 'HTTP' ? has(self.http) && !has(self.tcp) : !has(self.http)",
            "http is set with, and only with, type HTTP; tcp only with type TCP")])

retry = obj({
    "numRetries": count("Retries after the first attempt (default 2).", maximum=100, default=2),
    "retryOn": obj({
        "triggers": arr(s(enum=["5xx", "gateway-error", "reset", "connect-failure", "retriable-status-codes"]),
                        "`5xx`, `gateway-error` (502, 503, 504), `reset` (the connection failed after it was made), "
                        "`connect-failure`, `retriable-status-codes` (with httpStatusCodes).", max_items=8),
        "httpStatusCodes": arr({"type": "integer", "minimum": 100, "maximum": 599}, "Statuses retried.", max_items=32),
    }, desc="What is retried (default: connect-failure, and the statuses of retriable-status-codes)."),
    "perRetry": obj({
        "timeout": dur("Timeout of each attempt."),
        "backOff": obj({
            "baseInterval": dur("First wait (default 25ms)."),
            "maxInterval": dur("Longest wait (default 10 × baseInterval)."),
        }, desc="Exponential back-off with jitter between attempts."),
    }),
}, desc="Retries, for requests whose body can be replayed, within a retry budget (at most 20 % of the requests in flight to the backend are retries, and at least 3 may be).")

pct = {"type": "number", "minimum": 0, "maximum": 100, "default": 100,
       "description": "Share of requests, in percent (default 100)."}

fault_injection = obj({
    "delay": obj({
        "fixedDelay": dur("The delay before forwarding."),
        "percentage": pct,
    }, ["fixedDelay"]),
    "abort": obj({
        "httpStatus": {"type": "integer", "minimum": 200, "maximum": 600, "description": "HTTP status answered (default 503)."},
        "grpcStatus": {"type": "integer", "minimum": 0, "maximum": 16, "description": "gRPC status answered to gRPC requests."},
        "percentage": pct,
    }, rules=[("has(self.httpStatus) || has(self.grpcStatus)", "httpStatus or grpcStatus must be set")]),
}, desc="Delays and aborts for a share of requests, before forwarding (access-log flag FI).",
    rules=[("has(self.delay) || has(self.abort)", "delay or abort must be set")])

status_match = obj({
    "type": s("`Value` (default) or `Range`.", enum=["Value", "Range"], default="Value"),
    "value": {"type": "integer", "minimum": 100, "maximum": 599},
    "range": obj({
        "start": {"type": "integer", "minimum": 100, "maximum": 599},
        "end": {"type": "integer", "minimum": 100, "maximum": 599},
    }, ["start", "end"], rules=[("self.start <= self.end", "start must not be above end")]),
}, rules=[("self.type == 'Range' ? has(self.range) && !has(self.value) : has(self.value) && !has(self.range)",
           "value is set with type Value, range with type Range")])

response_override = obj({
    "match": obj({
        "statusCodes": arr(status_match, "Statuses (any matches).", min_items=1, max_items=50),
    }, ["statusCodes"]),
    "response": obj({
        "contentType": s("Content-Type of the new body.", maxLength=256),
        "body": obj({
            "type": s("`Inline` (default) or `ValueRef`.", enum=["Inline", "ValueRef"], default="Inline"),
            "inline": s("The body.", maxLength=65536),
            "valueRef": obj({
                "group": s("`\"\"`.", maxLength=253, default=""),
                "kind": s("`ConfigMap`.", enum=["ConfigMap"]),
                "name": s("A ConfigMap in the policy's namespace; its `response.body` key is the body.", minLength=1, maxLength=253),
            }, ["kind", "name"]),
        }, rules=[("self.type == 'ValueRef' ? has(self.valueRef) : has(self.inline)",
                   "inline is set with type Inline, valueRef with type ValueRef")]),
        "statusCode": {"type": "integer", "minimum": 100, "maximum": 599, "description": "Status answered instead (default: the original)."},
    }),
}, ["match", "response"])

timeout = obj({
    "tcp": obj({
        "connectTimeout": dur("Time allowed to make an upstream connection (default 5s, the built-in upstream connect timeout)."),
    }),
    "http": obj({
        "requestTimeout": dur("The whole request, retries included (504 past it)."),
        "connectionIdleTimeout": dur("An idle pooled upstream connection is closed after it "
                                     "(default: `--upstream-idle-timeout`, 90s)."),
        "maxConnectionDuration": dur("An upstream connection is not reused once it is this old (default: no limit)."),
    }),
})

spec = obj({
    "targetRef": target_ref(KINDS),
    "targetRefs": arr(target_ref(KINDS), "The Gateways, listeners, routes and route rules this policy applies to.", max_items=16),
    "rateLimit": obj({
        "local": {**rules, "description": "Limits kept in each proxy (memory bounded: see docs/backend-traffic-policy.md)."},
        "global": {**rules, "description": "Limits shared by every proxy through Redis (`--rate-limit-redis`)."},
    }, desc="Rate limits; a request must pass both the local and the global rules it matches.",
        rules=[("has(self.local) || has(self.global)", "at least one of local or global must be set")]),
    "loadBalancer": load_balancer,
    "circuitBreaker": circuit_breaker,
    "healthCheck": obj({"passive": passive, "active": active}, desc="Health checks."),
    "retry": retry,
    "timeout": timeout,
    "faultInjection": fault_injection,
    "compression": {**arr(obj({
        "type": s("`Gzip`, `Brotli` or `Zstd`.", enum=["Gzip", "Brotli", "Zstd"]),
        "minContentLength": count("Bodies known to be shorter, in bytes, are not compressed (default 30; "
                                  "the smallest of the entries applies).", maximum=1073741824),
    }, ["type"]), "Response compression, in order of preference, negotiated from Accept-Encoding.", max_items=3),
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    "responseOverride": arr(response_override, "Answers of matching statuses (from the backend, or the gateway's own "
                            "after routing) replaced; the first match wins.", max_items=16),
}, desc="BackendTrafficPolicySpec: the fields Portcullis implements (others are rejected).",
    rules=[("has(self.targetRef) || has(self.targetRefs)", "either targetRef or targetRefs must be set")])

write_crd("BackendTrafficPolicy", "backendtrafficpolicies", "btp", spec,
          "BackendTrafficPolicy: rate limits, load balancing, circuit breaking, outlier detection, retries and timeouts "
          "between the gateway and its backends (GEP-713 policy).",
          "scripts/gen-backendtrafficpolicy-crd.py")
