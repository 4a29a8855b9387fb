#!/usr/bin/env python3
"""Generate crates/portcullis-source/crds/portcullis.dev_securitypolicies.yaml.

The schema lists only the fields Portcullis implements: anything else is an
unknown field and is rejected. Field names follow Envoy Gateway's
gateway.envoyproxy.io/v1alpha1 SecurityPolicy. Run from the repository root;
the Helm chart's copy (deploy/helm/portcullis/crds/) is written too.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crdgen import DURATION, HEADER_NAME, arr, obj, s, target_ref, write_crd  # noqa: E402

KINDS = ["Gateway", "HTTPRoute", "GRPCRoute"]

secret_ref = obj({
    "group": s("Group, the core group (`\"\"`).", maxLength=253, default=""),
    "kind": s("Kind, `Secret`.", maxLength=63, default="Secret"),
    "name": s("Name.", minLength=1, maxLength=253),
    "namespace": s("Namespace (another namespace needs a ReferenceGrant).", minLength=1, maxLength=63),
}, ["name"], rules=[("self.group == '' && self.kind == 'Secret'", "only Secrets of the core group are supported")])

backend_ref = obj({
    "group": s("Group, the core group (`\"\"`).", maxLength=253, default=""),
    "kind": s("Kind, `Service`.", maxLength=63, default="Service"),
    "name": s("Name.", minLength=1, maxLength=253),
    "namespace": s("Namespace (another namespace needs a ReferenceGrant).", minLength=1, maxLength=63),
    "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535,
             "description": "Service port."},
}, ["name", "port"], rules=[("self.group == '' && self.kind == 'Service'", "only Services of the core group are supported")])

cors = obj({
    "allowOrigins": arr(s(minLength=1, maxLength=253), "Allowed origins: `https://a.example`, `https://*.example.com` or `*`.", max_items=64),
    "allowMethods": arr(s(minLength=1), "Allowed methods, `*` for any.", max_items=16),
    "allowHeaders": arr(s(minLength=1), "Allowed request headers, `*` for any.", max_items=64),
    "exposeHeaders": arr(s(minLength=1), "Response headers exposed to the page.", max_items=64),
    "maxAge": {**DURATION, "description": "How long a preflight answer may be cached (default 5s)."},
    "allowCredentials": {"type": "boolean", "description": "Allow credentials (cookies, Authorization)."},
}, desc="Cross-origin resource sharing, as the HTTPRoute CORS filter.")

basic_auth = obj({
    "users": {**secret_ref, "description": "Secret whose `.htpasswd` key holds `user:hash` lines (bcrypt `$2y$`/`$2b$`/`$2a$` or `{SHA}`)."},
    "forwardUsernameHeader": {**HEADER_NAME, "description": "Header carrying the user name to the backend."},
}, ["users"], desc="HTTP Basic authentication.")

extract_from = obj({
    "headers": arr(s(minLength=1), "Header names.", min_items=1),
    "params": arr(s(minLength=1), "Query parameter names.", min_items=1),
    "cookies": arr(s(minLength=1), "Cookie names.", min_items=1),
}, rules=[("(has(self.headers) ? 1 : 0) + (has(self.params) ? 1 : 0) + (has(self.cookies) ? 1 : 0) == 1",
           "exactly one of headers, params or cookies must be set")])

api_key_auth = obj({
    "credentialRefs": arr(secret_ref, "Secrets mapping client ID to API key.", min_items=1, max_items=16),
    "extractFrom": arr(extract_from, "Where the key is read from; the first source holding one is used.", min_items=1),
    "forwardClientIDHeader": {**HEADER_NAME, "description": "Header carrying the client ID to the backend."},
    "sanitize": {"type": "boolean", "description": "Remove the key from the request before the backend (default false)."},
}, ["credentialRefs", "extractFrom"], desc="API key authentication.")

jwt_provider = obj({
    "name": s("Unique name of the provider.", minLength=1, maxLength=253),
    "issuer": s("Required `iss` claim; not checked when unset.", maxLength=253),
    "audiences": arr(s(minLength=1), "Accepted `aud` values (any); not checked when unset.", max_items=8),
    "remoteJWKS": obj({
        "uri": s("https:// (or http://) URL of the key set.", minLength=1, maxLength=253),
        "cacheDuration": {**DURATION, "default": "300s", "description": "Refresh interval of the fetched keys (default 300s)."},
    }, ["uri"], desc="Keys fetched from a URL, refreshed in the background; a failed fetch keeps the last good keys.",
        rules=[("self.uri.startsWith('https://') || self.uri.startsWith('http://')", "uri must be an http(s) URL")]),
    "localJWKS": obj({
        "type": s("`Inline` (the only type supported).", enum=["Inline"], default="Inline"),
        "inline": s("The JSON Web Key Set.", minLength=1, maxLength=262144),
    }, ["inline"], desc="Keys inline."),
    "claimToHeaders": arr(obj({
        "header": {**HEADER_NAME, "description": "Request header to set."},
        "claim": s("Claim, nested ones with dots (`a.b`).", minLength=1),
    }, ["header", "claim"]), "Claims copied into request headers."),
    "extractFrom": obj({
        "headers": arr(obj({
            "name": {**HEADER_NAME, "description": "Header name."},
            "valuePrefix": s("Prefix before the token, e.g. `Bearer `."),
        }, ["name"]), "Headers."),
        "cookies": arr(s(minLength=1), "Cookie names."),
        "params": arr(s(minLength=1), "Query parameter names."),
    }, desc="Where the token is read from (default: `Authorization: Bearer <token>`)."),
}, ["name"], rules=[("has(self.remoteJWKS) != has(self.localJWKS)", "exactly one of remoteJWKS or localJWKS must be set")])

jwt = obj({
    "optional": {"type": "boolean", "description": "A request without a token passes (an invalid token is still refused)."},
    "providers": {**arr(jwt_provider, "Providers; a token is valid when any provider validates it. Names are unique.", min_items=1, max_items=16),
                  "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
}, ["providers"], desc="JWT authentication.")

ext_auth = obj({
    "http": obj({
        "backendRef": backend_ref,
        "backendRefs": arr(backend_ref, "The service (one).", max_items=1),
        "path": s("Prefix put before the request path in the check request."),
        "headersToBackend": arr(s(minLength=1), "Service response headers copied to the upstream request."),
    }, desc="An HTTP authorization service.",
        rules=[("has(self.backendRef) != has(self.backendRefs)", "exactly one of backendRef or backendRefs must be set")]),
    "grpc": obj({
        "backendRef": backend_ref,
        "backendRefs": arr(backend_ref, "The service (one).", max_items=1),
    }, desc="A gRPC authorization service speaking Envoy's envoy.service.auth.v3.Authorization/Check (OPA-Envoy, Authorino), over h2c.",
        rules=[("has(self.backendRef) != has(self.backendRefs)", "exactly one of backendRef or backendRefs must be set")]),
    "headersToExtAuth": arr(s(minLength=1), "Request headers sent to the service. HTTP: besides Host, Method, Path, Content-Length and Authorization; gRPC: only these when set, else all headers."),
    "bodyToExtAuth": obj({
        "maxRequestBytes": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 16777216,
                            "description": "Largest request body buffered and sent to the service; a larger request is answered 413."},
    }, ["maxRequestBytes"], desc="Send the request body to the service (HTTP: as the check request's body; gRPC: attributes.request.http.body)."),
    "timeout": {**DURATION, "description": "Timeout of a check (default 10s)."},
    "failOpen": {"type": "boolean", "default": False, "description": "Let requests through when the service cannot answer."},
}, desc="External authorization (HTTP or gRPC).",
    rules=[("has(self.http) != has(self.grpc)", "exactly one of http or grpc must be set")])

string_match = obj({
    "name": {**HEADER_NAME, "description": "Header name."},
    "type": s("`Exact` (default), `Prefix`, `Suffix` or `RegularExpression`.",
              enum=["Exact", "Prefix", "Suffix", "RegularExpression"], default="Exact"),
    "value": s("Value to match.", minLength=1, maxLength=1024),
}, ["name", "value"])

oidc = obj({
    "provider": obj({
        "issuer": s("Issuer URL; `<issuer>/.well-known/openid-configuration` is discovered.", minLength=1, maxLength=253),
        "authorizationEndpoint": s("Overrides the discovered authorization_endpoint.", maxLength=253),
        "tokenEndpoint": s("Overrides the discovered token_endpoint.", maxLength=253),
    }, ["issuer"], desc="The OpenID provider.",
        rules=[("self.issuer.startsWith('https://') || self.issuer.startsWith('http://')", "issuer must be an http(s) URL")]),
    "clientID": s("The client ID registered at the provider.", minLength=1, maxLength=253),
    "clientSecret": {**secret_ref, "description": "Secret whose `client-secret` key holds the client secret."},
    "scopes": arr(s(minLength=1, maxLength=253), "Scopes requested; `openid` is always added.", max_items=32),
    "redirectURL": s("Where the provider sends the browser back (default `<X-Forwarded-Proto>://<host>/oauth2/callback`). Its path must be routed to a rule this policy covers.", maxLength=2048),
    "logoutPath": s("Path that ends the session (default `/logout`).", minLength=1, maxLength=1024, pattern=r"^/"),
    "forwardAccessToken": {"type": "boolean", "description": "Send the access token upstream as `Authorization: Bearer` (default false)."},
    "refreshToken": {"type": "boolean", "description": "Use the refresh token when the access token has expired (default false)."},
    "cookieDomain": s("Domain attribute of the cookies (default: host-only cookies).", minLength=1, maxLength=253,
                      pattern=r"^\.?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"),
    "denyRedirect": obj({
        "headers": arr(string_match, "Header matches; a request matching any gets 401 instead of a redirect.", min_items=1, max_items=16),
    }, ["headers"], desc="Requests answered 401 instead of being redirected to log in."),
}, ["provider", "clientID", "clientSecret"], desc="OpenID Connect: the authorization-code flow with PKCE, a session in an encrypted cookie.")

authorization = obj({
    "rules": arr(obj({
        "name": s("Name, for logs.", minLength=1, maxLength=253),
        "action": s("`Allow` or `Deny`.", enum=["Allow", "Deny"]),
        "principal": obj({
            "clientCIDRs": arr(s(minLength=1, maxLength=64), "Client address ranges (any matches).", min_items=1),
            "jwt": obj({
                "provider": s("The JWT provider of this policy that validated the token.", minLength=1, maxLength=253),
                "claims": arr(obj({
                    "name": s("Claim, nested ones with dots.", minLength=1),
                    "valueType": s("`String` (default) or `StringArray`.", enum=["String", "StringArray"], default="String"),
                    "values": arr(s(), "Accepted values (any).", min_items=1, max_items=16),
                }, ["name", "values"]), "Claims (all must match).", max_items=16),
                "scopes": arr(s(minLength=1), "Scopes (all must be in the `scope` claim).", max_items=16),
            }, ["provider"], rules=[("has(self.claims) || has(self.scopes)", "at least one of claims or scopes must be set")]),
            "headers": arr(obj({
                "name": {**HEADER_NAME, "description": "Header name (case-insensitive)."},
                "values": arr(s(), "Exact values (any).", min_items=1, max_items=256),
            }, ["name", "values"]), "Headers (all must match).", min_items=1, max_items=256),
        }, desc="Who the rule applies to; every kind given must match."),
    }, ["action"]), "Rules; the first that matches decides."),
    "defaultAction": s("Action when no rule matches (default `Deny`).", enum=["Allow", "Deny"]),
}, desc="Authorization by client address, JWT claims and headers.",
    rules=[("!has(self.rules) || self.rules.all(r, !has(r.principal) || !has(r.principal.clientCIDRs) || r.principal.clientCIDRs.all(c, isCIDR(c)))",
            "clientCIDRs must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32")])

spec = obj({
    "targetRef": target_ref(KINDS),
    "targetRefs": arr(target_ref(KINDS), "The Gateways, listeners, routes and route rules this policy applies to.", max_items=16),
    "cors": cors,
    "basicAuth": basic_auth,
    "apiKeyAuth": api_key_auth,
    "jwt": jwt,
    "extAuth": ext_auth,
    "oidc": oidc,
    "authorization": authorization,
}, desc="SecurityPolicySpec: the fields Portcullis implements (others are rejected).",
    rules=[("has(self.targetRef) || has(self.targetRefs)", "either targetRef or targetRefs must be set"),
           ("!has(self.authorization) || !has(self.authorization.rules) || self.authorization.rules.all(r, !has(r.principal) || !has(r.principal.jwt) || (has(self.jwt) && self.jwt.providers.exists(p, p.name == r.principal.jwt.provider)))",
            "authorization rules may only name JWT providers of this policy")])

write_crd("SecurityPolicy", "securitypolicies", "sp", spec,
          "SecurityPolicy: authentication, authorization and CORS at the gateway (GEP-713 policy).",
          "scripts/gen-securitypolicy-crd.py")
