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
from crdgen import HEADER_NAME, arr, obj, s, target_ref, write_crd  # noqa: E402

KINDS = ["Gateway", "HTTPRoute", "GRPCRoute"]

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

spec = obj({
    "targetRef": target_ref(KINDS),
    "targetRefs": arr(target_ref(KINDS), "The Gateways, listeners, routes and route rules this policy applies to.", max_items=16),
    "rateLimit": obj({
        "local": {**rules, "description": "Limits kept in each proxy (memory bounded: see docs/backend-traffic-policy.md)."},
        "global": {**rules, "description": "Limits shared by every proxy through Redis (`--rate-limit-redis`)."},
    }, desc="Rate limits; a request must pass both the local and the global rules it matches.",
        rules=[("has(self.local) || has(self.global)", "at least one of local or global must be set")]),
}, desc="BackendTrafficPolicySpec: the fields Portcullis implements (others are rejected).",
    rules=[("has(self.targetRef) || has(self.targetRefs)", "either targetRef or targetRefs must be set")])

write_crd("BackendTrafficPolicy", "backendtrafficpolicies", "btp", spec,
          "BackendTrafficPolicy: rate limits between the gateway and its backends (GEP-713 policy).",
          "scripts/gen-backendtrafficpolicy-crd.py")
