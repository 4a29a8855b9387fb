//! The annotation table: every ingress-nginx annotation the converter knows,
//! what it becomes and how the result differs. The migration guide's table
//! (`docs/migrating-from-ingress-nginx.md`) is generated from it.

/// How an annotation converts, in general (one Ingress may fare worse: the
/// report says so for that Ingress).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Support {
    /// Same behaviour.
    Converted,
    /// Converted; the behaviour differs as the entry says.
    Differs,
    /// Not converted: the entry says why and what replaces it.
    Unsupported,
}

impl Support {
    /// The word used in the report and the guide.
    pub fn as_str(self) -> &'static str {
        match self {
            Support::Converted => "converted",
            Support::Differs => "differs",
            Support::Unsupported => "unsupported",
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// The name after `nginx.ingress.kubernetes.io/`.
    pub name: &'static str,
    /// How it converts.
    pub support: Support,
    /// What it becomes (or, unsupported, what replaces it).
    pub becomes: &'static str,
    /// How the behaviour differs from ingress-nginx (empty: it does not).
    pub difference: &'static str,
}

/// The prefix of ingress-nginx annotations.
pub const PREFIX: &str = "nginx.ingress.kubernetes.io/";

const SNIPPET: &str = "nginx configuration is never executed. Common uses have a \
policy: headers → HTTPRoute `RequestHeaderModifier`/`ResponseHeaderModifier` filters; \
allow/deny → SecurityPolicy `authorization`; redirects and rewrites → `RequestRedirect`/`URLRewrite`; \
rate limits → BackendTrafficPolicy `rateLimit`";

macro_rules! row {
    ($name:literal, $s:ident, $becomes:literal, $diff:expr) => {
        Annotation {
            name: $name,
            support: Support::$s,
            becomes: $becomes,
            difference: $diff,
        }
    };
}

/// Every annotation known to the converter, by name.
pub const ANNOTATIONS: &[Annotation] = &[
    row!(
        "affinity",
        Differs,
        "`cookie`: HTTPRoute rule `sessionPersistence` (type `Cookie`)",
        "the cookie is Portcullis' own (its value is not nginx's hash); `affinity-mode` is not reproduced"
    ),
    row!(
        "affinity-mode",
        Unsupported,
        "nothing: Portcullis keeps a session on its backend while that backend is ready",
        "`balanced`/`persistent` are not distinguished"
    ),
    row!(
        "app-root",
        Converted,
        "an `Exact /` rule with `RequestRedirect` (`ReplaceFullPath`, 302)",
        ""
    ),
    row!(
        "auth-method",
        Unsupported,
        "nothing: the check request uses the client's method",
        "the method cannot be chosen"
    ),
    row!(
        "auth-realm",
        Differs,
        "nothing: SecurityPolicy `basicAuth` answers 401 with its own realm",
        "the realm in `WWW-Authenticate` is not configurable"
    ),
    row!(
        "auth-response-headers",
        Converted,
        "SecurityPolicy `extAuth.http.headersToBackend`",
        ""
    ),
    row!(
        "auth-secret",
        Differs,
        "SecurityPolicy `basicAuth.users`: a Secret `<name>-htpasswd` whose `.htpasswd` key holds the users (converted from the input's Secret when it is there)",
        "ingress-nginx reads the key `auth` (or one key per user with `auth-map`); Portcullis reads `.htpasswd`; only bcrypt and `{SHA}` hashes are accepted (MD5/crypt lines are skipped with a warning)"
    ),
    row!(
        "auth-secret-type",
        Converted,
        "how the converted `.htpasswd` is built: `auth-file` (key `auth`) or `auth-map` (one key per user)",
        ""
    ),
    row!(
        "auth-signin",
        Unsupported,
        "nothing: the authorization service's answer is returned as it is",
        "a 401 is not turned into a redirect to the sign-in page; have the service answer the redirect itself"
    ),
    row!("auth-snippet", Unsupported, "nothing", SNIPPET),
    row!(
        "auth-type",
        Converted,
        "`basic`: SecurityPolicy `basicAuth` (with `auth-secret`); `digest` is not supported",
        ""
    ),
    row!(
        "auth-url",
        Differs,
        "SecurityPolicy `extAuth.http` (the URL must name a cluster Service: `http://svc.ns.svc[.cluster.local][:port]/path`)",
        "the check request's path is the URL's path followed by the request's path (ingress-nginx sends the URL's path and the original URI in `X-Original-URI`); an answer other than 2xx is returned to the client as it is (ingress-nginx: 401 and 403 as they are, others 500)"
    ),
    row!(
        "backend-protocol",
        Differs,
        "`HTTP`: nothing; `GRPC`: nothing (gRPC requests go upstream over HTTP/2); `HTTPS`/`GRPCS`: a BackendTLSPolicy per Service; `H2C`: a note to set `appProtocol: kubernetes.io/h2c` on the Service port",
        "a BackendTLSPolicy always verifies the backend's certificate (system roots, hostname `<svc>.<ns>.svc` unless `proxy-ssl-name`); ingress-nginx does not verify unless `proxy-ssl-verify: on`"
    ),
    row!(
        "canary",
        Converted,
        "merged into the primary Ingress's HTTPRoute: weighted `backendRefs` or header-matched rules",
        ""
    ),
    row!(
        "canary-by-cookie",
        Differs,
        "a rule matching the `Cookie` header with a regular expression (`<name>=always`) → the canary",
        "`never` is not honoured against a weight (the weighted rule still applies)"
    ),
    row!(
        "canary-by-header",
        Converted,
        "rules matching the header: `always` → the canary, `never` → the primary",
        ""
    ),
    row!(
        "canary-by-header-pattern",
        Converted,
        "a rule matching the header with a regular expression → the canary",
        ""
    ),
    row!(
        "canary-by-header-value",
        Converted,
        "a rule matching the header's exact value → the canary",
        ""
    ),
    row!(
        "canary-weight",
        Converted,
        "weighted `backendRefs` (primary `total − weight`, canary `weight`)",
        ""
    ),
    row!(
        "canary-weight-total",
        Converted,
        "the total of the weights",
        ""
    ),
    row!("configuration-snippet", Unsupported, "nothing", SNIPPET),
    row!(
        "cors-allow-credentials",
        Converted,
        "SecurityPolicy `cors.allowCredentials`",
        ""
    ),
    row!(
        "cors-allow-headers",
        Converted,
        "SecurityPolicy `cors.allowHeaders`",
        ""
    ),
    row!(
        "cors-allow-methods",
        Converted,
        "SecurityPolicy `cors.allowMethods`",
        ""
    ),
    row!(
        "cors-allow-origin",
        Converted,
        "SecurityPolicy `cors.allowOrigins`",
        ""
    ),
    row!(
        "cors-expose-headers",
        Converted,
        "SecurityPolicy `cors.exposeHeaders`",
        ""
    ),
    row!(
        "cors-max-age",
        Converted,
        "SecurityPolicy `cors.maxAge`",
        ""
    ),
    row!(
        "custom-http-errors",
        Unsupported,
        "nothing: backend error pages are passed through",
        "there are no custom error pages"
    ),
    row!(
        "default-backend",
        Unsupported,
        "nothing: requests with no route are answered 404 by Portcullis",
        "route a catch-all path to the Service instead"
    ),
    row!(
        "denylist-source-range",
        Differs,
        "SecurityPolicy `authorization`: a `Deny` rule with `clientCIDRs`",
        "the client address is the TCP peer unless `--trusted-hops`/`--trusted-cidrs` say otherwise; with authentication, a denied client without credentials gets 401 (authentication runs first), not 403"
    ),
    row!(
        "enable-cors",
        Differs,
        "SecurityPolicy `cors`, with ingress-nginx's defaults for the `cors-*` annotations not given",
        "a preflight is answered 200 (ingress-nginx: 204)"
    ),
    row!(
        "force-ssl-redirect",
        Differs,
        "an HTTPRoute on the HTTP listener answering `RequestRedirect` scheme `https`, 308",
        "without a TLS listener for the host nothing serves the HTTPS side; TLS terminated in front of Portcullis is not detected by `X-Forwarded-Proto`"
    ),
    row!(
        "limit-burst-multiplier",
        Differs,
        "nothing of its own",
        "the bucket holds `limit` requests (refilled over one second or minute): the sustained rate is the same, a burst is at most `limit` requests, not `limit × multiplier`"
    ),
    row!(
        "limit-connections",
        Unsupported,
        "nothing yet: no per-client connection limit",
        "`--max-connections-per-port` bounds connections per port, not per client"
    ),
    row!(
        "limit-rpm",
        Differs,
        "BackendTrafficPolicy `rateLimit.local`: one bucket per client address (`sourceCIDR` `Distinct` `0.0.0.0/0` and `::/0`), `requests: N, unit: Minute`, shared by the Ingress's routes",
        "a token bucket (a full minute's worth at once, then refilled evenly) instead of nginx's leaky bucket with `burst`; refusals are 429 with `Retry-After` (ingress-nginx: 503); one bucket per proxy"
    ),
    row!(
        "limit-rps",
        Differs,
        "BackendTrafficPolicy `rateLimit.local`: one bucket per client address (`sourceCIDR` `Distinct` `0.0.0.0/0` and `::/0`), `requests: N, unit: Second`, shared by the Ingress's routes",
        "a token bucket (N requests at once, then refilled evenly) instead of nginx's leaky bucket with `burst = N × limit-burst-multiplier` (`nodelay`); refusals are 429 with `Retry-After` (ingress-nginx: 503); one bucket per proxy"
    ),
    row!(
        "limit-whitelist",
        Unsupported,
        "nothing: every client is limited",
        "exempt clients need a route of their own"
    ),
    row!(
        "load-balance",
        Unsupported,
        "nothing yet: Portcullis balances round robin over ready endpoints",
        "`ewma` and others are not reproduced"
    ),
    row!("modsecurity-snippet", Unsupported, "nothing", SNIPPET),
    row!(
        "permanent-redirect",
        Differs,
        "a `RequestRedirect` (scheme, hostname, port, `ReplaceFullPath`) on every rule",
        "the request's query string is kept (ingress-nginx drops it); a query in the target URL cannot be expressed"
    ),
    row!(
        "permanent-redirect-code",
        Converted,
        "`RequestRedirect.statusCode` (301, 302, 303, 307 or 308)",
        ""
    ),
    row!(
        "proxy-body-size",
        Unsupported,
        "a process flag: `portcullis run --max-request-body-bytes N`",
        "the limit is per process, not per Ingress"
    ),
    row!(
        "proxy-connect-timeout",
        Unsupported,
        "nothing: there is no per-route connect timeout",
        "the connect time counts in `timeouts.backendRequest` when `proxy-read-timeout` is given"
    ),
    row!(
        "proxy-next-upstream",
        Differs,
        "HTTPRoute rule `retry`: `http_5xx` → `codes`, `error`/`timeout` → retries on connection failures (always on with `retry`)",
        "`timeout`, `invalid_header`, `http_403`/`http_404`/`http_429` retry only through `codes`; retries need a replayable (empty or buffered) body"
    ),
    row!(
        "proxy-next-upstream-timeout",
        Unsupported,
        "nothing: retries run inside the route's `timeouts.request`",
        ""
    ),
    row!(
        "proxy-next-upstream-tries",
        Converted,
        "HTTPRoute rule `retry.attempts` (tries − 1)",
        ""
    ),
    row!(
        "proxy-read-timeout",
        Differs,
        "HTTPRoute rule `timeouts.backendRequest`",
        "bounds the wait for the response head; nginx also bounds each read of the body"
    ),
    row!(
        "proxy-send-timeout",
        Unsupported,
        "a process flag: `--body-idle-timeout` bounds the wait between reads of a request body",
        "per process, not per Ingress"
    ),
    row!(
        "proxy-ssl-name",
        Converted,
        "BackendTLSPolicy `validation.hostname`",
        ""
    ),
    row!(
        "proxy-ssl-secret",
        Differs,
        "BackendTLSPolicy `validation.caCertificateRefs`: a ConfigMap `<name>-ca` with the Secret's `ca.crt` (converted from the input's Secret when it is there)",
        "the Secret's client certificate (`tls.crt`/`tls.key`) is not presented to the backend"
    ),
    row!(
        "proxy-ssl-server-name",
        Converted,
        "BackendTLSPolicy `validation.hostname` is always sent as SNI",
        ""
    ),
    row!(
        "proxy-ssl-verify",
        Differs,
        "a BackendTLSPolicy (the certificate is always verified)",
        "`off` cannot be expressed: verification is always on"
    ),
    row!(
        "rewrite-target",
        Differs,
        "`URLRewrite`: a target without captures → `ReplaceFullPath`; the idiom `path: /p(/|$)(.*)` with `/t/$2` → `PathPrefix /p` + `ReplacePrefixMatch /t`",
        "other capture groups cannot be expressed (the report says so, and the rule is kept without rewrite); regex paths match case-sensitively (nginx: `~*`, case-insensitive)"
    ),
    row!(
        "server-alias",
        Converted,
        "extra `hostnames` on the Ingress's HTTPRoutes",
        ""
    ),
    row!("server-snippet", Unsupported, "nothing", SNIPPET),
    row!(
        "service-upstream",
        Differs,
        "nothing: Portcullis always sends to the Service's endpoints",
        "the Service's cluster IP is not used"
    ),
    row!(
        "session-cookie-expires",
        Converted,
        "`sessionPersistence.absoluteTimeout`, cookie `lifetimeType: Permanent`",
        ""
    ),
    row!(
        "session-cookie-max-age",
        Converted,
        "`sessionPersistence.absoluteTimeout`, cookie `lifetimeType: Permanent`",
        ""
    ),
    row!(
        "session-cookie-name",
        Converted,
        "`sessionPersistence.sessionName`",
        ""
    ),
    row!(
        "session-cookie-path",
        Unsupported,
        "nothing: the cookie's path is Portcullis' own",
        ""
    ),
    row!(
        "session-cookie-samesite",
        Unsupported,
        "nothing: the cookie's attributes are Portcullis' own",
        ""
    ),
    row!(
        "ssl-passthrough",
        Differs,
        "a TLS listener in `Passthrough` mode for each host and a TLSRoute to the first path's Service",
        "paths are ignored (as in ingress-nginx); plain HTTP for the host is not served"
    ),
    row!(
        "ssl-redirect",
        Converted,
        "default (`true`) with TLS for the host: an HTTPRoute on the HTTP listener answering `RequestRedirect` scheme `https`, 308; `false`: the routes also serve HTTP",
        ""
    ),
    row!("stream-snippet", Unsupported, "nothing", SNIPPET),
    row!(
        "temporal-redirect",
        Differs,
        "a `RequestRedirect` (scheme, hostname, port, `ReplaceFullPath`) on every rule",
        "the request's query string is kept (ingress-nginx drops it); a query in the target URL cannot be expressed"
    ),
    row!(
        "temporal-redirect-code",
        Converted,
        "`RequestRedirect.statusCode` (301, 302, 303, 307 or 308)",
        ""
    ),
    row!(
        "upstream-hash-by",
        Unsupported,
        "nothing yet: no consistent hashing",
        "use `affinity: cookie` for stickiness"
    ),
    row!("upstream-vhost", Converted, "`URLRewrite.hostname`", ""),
    row!(
        "use-regex",
        Differs,
        "`ImplementationSpecific` and `Prefix` paths with regular-expression characters → `RegularExpression` (`<path>.*`)",
        "case-sensitive (nginx: `~*`); the regex applies to this Ingress's paths only (ingress-nginx: every path of the host)"
    ),
    row!(
        "whitelist-source-range",
        Differs,
        "SecurityPolicy `authorization`: an `Allow` rule with `clientCIDRs`, `defaultAction: Deny`",
        "the client address is the TCP peer unless `--trusted-hops`/`--trusted-cidrs` say otherwise; with authentication, a refused client without credentials gets 401 (authentication runs first), not 403"
    ),
    row!(
        "x-forwarded-prefix",
        Converted,
        "a `RequestHeaderModifier` setting `X-Forwarded-Prefix`",
        ""
    ),
];

/// The row of an annotation (name without the prefix).
pub fn lookup(name: &str) -> Option<&'static Annotation> {
    ANNOTATIONS.iter().find(|a| a.name == name)
}

/// The table as Markdown, for the migration guide.
pub fn markdown() -> String {
    let mut s = String::from("| annotation | status | becomes | difference |\n|---|---|---|---|\n");
    for a in ANNOTATIONS {
        let diff = if a.difference.is_empty() {
            "none".to_string()
        } else {
            a.difference.replace('|', "\\|")
        };
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            a.name,
            a.support.as_str(),
            a.becomes.replace('|', "\\|"),
            diff
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in ANNOTATIONS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn differs_rows_say_how() {
        for a in ANNOTATIONS {
            if a.support == Support::Differs {
                assert!(!a.difference.is_empty(), "{} has no difference", a.name);
            }
        }
    }
}
