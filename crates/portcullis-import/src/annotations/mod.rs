//! Reading the annotations of one Ingress into [`Effects`], with one report
//! entry per annotation.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::duration;
use crate::input::{Found, Inputs};
use crate::report::{Entry, Outcome};
use crate::table::{self, PREFIX};

mod security;
use security::{read_basic_auth, read_cors, read_ext_auth, read_limits, read_ranges};

/// A redirect answered instead of the backend.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Redirect {
    /// The `requestRedirect` object.
    pub filter: Value,
}

/// Canary settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Canary {
    /// `canary-weight`.
    pub weight: Option<u32>,
    /// `canary-weight-total` (100).
    pub total: u32,
    /// `canary-by-header`.
    pub header: Option<String>,
    /// `canary-by-header-value`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`.
    pub header_pattern: Option<String>,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
}

/// A ReferenceGrant needed: from `from_kind` objects in `from_ns` to the object
/// `to_kind`/`to_name` in `ns`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// Namespace of the referenced object.
    pub ns: String,
    /// `group/kind` of the referrer.
    pub from_group: String,
    /// Kind of the referrer.
    pub from_kind: String,
    /// Namespace of the referrer.
    pub from_ns: String,
    /// Kind of the referenced object (core group).
    pub to_kind: String,
    /// Name of the referenced object.
    pub to_name: String,
}

/// What the annotations of one Ingress ask for.
#[derive(Clone, Debug, Default)]
pub struct Effects {
    /// Regex paths (`use-regex`, or implied by `rewrite-target`).
    pub regex: bool,
    /// `rewrite-target`.
    pub rewrite: Option<String>,
    /// `ssl-redirect` (default true).
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`.
    pub force_ssl_redirect: bool,
    /// `permanent-redirect` / `temporal-redirect`.
    pub redirect: Option<Redirect>,
    /// `app-root`.
    pub app_root: Option<String>,
    /// BackendTLSPolicy `validation` for the Ingress's Services.
    pub backend_tls: Option<(Option<String>, Option<String>)>,
    /// HTTPRoute rule `timeouts`.
    pub timeouts: Option<Value>,
    /// HTTPRoute rule `retry`.
    pub retry: Option<Value>,
    /// HTTPRoute rule `sessionPersistence`.
    pub session: Option<Value>,
    /// `server-alias`.
    pub aliases: Vec<String>,
    /// `ssl-passthrough`.
    pub passthrough: bool,
    /// `upstream-vhost`.
    pub upstream_vhost: Option<String>,
    /// `x-forwarded-prefix`.
    pub forwarded_prefix: Option<String>,
    /// SecurityPolicy spec fields (`cors`, `basicAuth`, `extAuth`, `authorization`).
    pub security: Map<String, Value>,
    /// BackendTrafficPolicy local rate-limit rules.
    pub rate_rules: Vec<Value>,
    /// `canary: "true"`.
    pub canary: Option<Canary>,
    /// Objects to emit (converted Secrets, ConfigMaps).
    pub objects: Vec<Value>,
    /// ReferenceGrants needed.
    pub grants: Vec<Grant>,
    /// Report entries, one per annotation.
    pub entries: Vec<Entry>,
    /// Notes.
    pub notes: Vec<String>,
}

/// The state while reading.
struct Reader<'a> {
    ann: &'a BTreeMap<String, String>,
    fx: Effects,
    ns: String,
}

impl<'a> Reader<'a> {
    fn get(&self, short: &str) -> Option<&'a str> {
        self.ann.get(&format!("{PREFIX}{short}")).map(|s| s.trim())
    }
    fn flag(&self, short: &str) -> Option<bool> {
        self.get(short).map(|v| v.eq_ignore_ascii_case("true"))
    }
    /// Record the table's outcome for `short` (when present).
    fn table(&mut self, short: &str) {
        if let (Some(v), Some(row)) = (self.get(short), table::lookup(short)) {
            let e = Entry {
                annotation: format!("{PREFIX}{short}"),
                value: v.to_string(),
                outcome: row.support.into(),
                result: row.becomes.to_string(),
                difference: row.difference.to_string(),
            };
            self.fx.entries.push(e);
        }
    }
    /// Record a specific outcome for `short` (when present).
    fn put(
        &mut self,
        short: &str,
        outcome: Outcome,
        result: impl Into<String>,
        diff: impl Into<String>,
    ) {
        if let Some(v) = self.get(short) {
            self.fx.entries.push(Entry {
                annotation: format!("{PREFIX}{short}"),
                value: v.to_string(),
                outcome,
                result: result.into(),
                difference: diff.into(),
            });
        }
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Read every annotation of `ing`.
pub fn read(ing: &Found, inputs: &Inputs) -> Effects {
    let ann = ing.annotations();
    let mut r = Reader {
        ann: &ann,
        fx: Effects {
            ssl_redirect: true,
            ..Default::default()
        },
        ns: ing.namespace().to_string(),
    };
    let canary = r.flag("canary") == Some(true);
    if canary {
        read_canary(&mut r);
    } else {
        read_paths(&mut r, ing);
        read_redirects(&mut r);
        read_backend(&mut r, inputs);
        read_timeouts(&mut r);
        read_cors(&mut r);
        read_ranges(&mut r);
        read_limits(&mut r);
        read_basic_auth(&mut r, inputs);
        read_ext_auth(&mut r);
        read_affinity(&mut r);
        for s in [
            "proxy-body-size",
            "proxy-connect-timeout",
            "proxy-send-timeout",
            "limit-connections",
            "limit-whitelist",
            "upstream-hash-by",
            "load-balance",
            "custom-http-errors",
            "default-backend",
            "service-upstream",
            "configuration-snippet",
            "server-snippet",
            "auth-snippet",
            "stream-snippet",
            "modsecurity-snippet",
            "auth-method",
            "auth-signin",
            "affinity-mode",
            "session-cookie-path",
            "session-cookie-samesite",
        ] {
            r.table(s);
        }
        if let Some(size) = r.get("proxy-body-size").and_then(body_size) {
            let last =
                r.fx.entries
                    .iter_mut()
                    .find(|e| e.annotation.ends_with("proxy-body-size"));
            if let Some(e) = last {
                e.result = format!(
                    "a process flag: `portcullis run --max-request-body-bytes {size}` (applies to every route)"
                );
            }
        }
    }
    // Everything else: other canary annotations, unknown ones.
    let seen: Vec<String> = r.fx.entries.iter().map(|e| e.annotation.clone()).collect();
    for (k, v) in &ann {
        if seen.contains(k) {
            continue;
        }
        let Some(short) = k.strip_prefix(PREFIX) else {
            if k == "kubernetes.io/ingress.class" {
                r.fx.entries.push(Entry {
                    annotation: k.clone(),
                    value: v.clone(),
                    outcome: Outcome::Converted,
                    result: "the Gateway this Ingress's routes attach to (named after the class)"
                        .into(),
                    difference: String::new(),
                });
            } else if !k.starts_with("kubectl.kubernetes.io/") {
                r.fx.entries.push(Entry {
                    annotation: k.clone(),
                    value: v.clone(),
                    outcome: Outcome::Unknown,
                    result: "not an ingress-nginx annotation: not converted".into(),
                    difference: String::new(),
                });
            }
            continue;
        };
        let (outcome, result) = match table::lookup(short) {
            Some(_) if canary => (Outcome::Converted,
                "ignored, as ingress-nginx ignores it on a canary Ingress: the primary Ingress's applies".to_string()),
            Some(row) => (row.support.into(), row.becomes.to_string()),
            None => (Outcome::Unknown, "not a known ingress-nginx annotation: not converted; check what it did".to_string()),
        };
        r.fx.entries.push(Entry {
            annotation: k.clone(),
            value: v.clone(),
            outcome,
            result,
            difference: String::new(),
        });
    }
    r.fx.entries.sort_by(|a, b| a.annotation.cmp(&b.annotation));
    r.fx
}

fn read_canary(r: &mut Reader) {
    let mut c = Canary {
        total: 100,
        ..Default::default()
    };
    r.table("canary");
    c.total = r
        .get("canary-weight-total")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    r.table("canary-weight-total");
    c.weight = r.get("canary-weight").and_then(|v| v.parse().ok());
    r.table("canary-weight");
    c.header = r.get("canary-by-header").map(str::to_string);
    c.header_value = r.get("canary-by-header-value").map(str::to_string);
    c.header_pattern = r.get("canary-by-header-pattern").map(str::to_string);
    c.cookie = r.get("canary-by-cookie").map(str::to_string);
    for s in [
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
    ] {
        r.table(s);
    }
    r.fx.canary = Some(c);
}

fn read_paths(r: &mut Reader, ing: &Found) {
    r.fx.regex = r.flag("use-regex") == Some(true) || r.get("rewrite-target").is_some();
    r.table("use-regex");
    if let Some(t) = r.get("rewrite-target") {
        r.fx.rewrite = Some(t.to_string());
        let mut problems = vec![];
        let mut diffs = vec![];
        for p in ing
            .ingress
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .flat_map(|x| &x.http)
            .flat_map(|h| &h.paths)
        {
            let o = crate::paths::convert(
                p.path.as_deref().unwrap_or("/"),
                &p.path_type,
                true,
                Some(t),
            );
            problems.extend(o.problem);
            diffs.extend(o.differs);
        }
        let row = table::lookup("rewrite-target").expect("in the table");
        if problems.is_empty() {
            let mut diff = row.difference.to_string();
            for d in diffs {
                diff.push_str("; ");
                diff.push_str(&d);
            }
            let result = if t.contains('$') {
                "`URLRewrite` `ReplacePrefixMatch` on the `PathPrefix` before the capture"
                    .to_string()
            } else {
                format!(
                    "`URLRewrite` `ReplaceFullPath` {t:?} on every rule (nginx's rewrite replaces the whole path)"
                )
            };
            r.put("rewrite-target", Outcome::Differs, result, diff);
        } else {
            r.put(
                "rewrite-target",
                Outcome::Unsupported,
                problems.join("; "),
                "",
            );
        }
    }
    if let Some(a) = r.get("server-alias") {
        r.fx.aliases = list(a);
        r.table("server-alias");
    }
    if let Some(v) = r.get("upstream-vhost") {
        r.fx.upstream_vhost = Some(v.to_string());
        r.table("upstream-vhost");
    }
    if let Some(v) = r.get("x-forwarded-prefix") {
        r.fx.forwarded_prefix = Some(v.to_string());
        r.table("x-forwarded-prefix");
    }
}

/// A redirect target URL → `requestRedirect` fields; `None` when not absolute.
fn redirect_filter(url: &str, code: u16) -> Option<(Value, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (path, None),
    };
    let mut f = json!({"scheme": scheme, "statusCode": code, "path": {"type": "ReplaceFullPath", "replaceFullPath": path}});
    match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => {
            f["hostname"] = json!(h);
            f["port"] = json!(p.parse::<u16>().ok()?);
        }
        _ => f["hostname"] = json!(authority),
    }
    Some((f, query))
}

fn read_redirects(r: &mut Reader) {
    if let Some(v) = r.flag("ssl-redirect") {
        r.fx.ssl_redirect = v;
    }
    r.table("ssl-redirect");
    r.fx.force_ssl_redirect = r.flag("force-ssl-redirect") == Some(true);
    r.table("force-ssl-redirect");
    for (which, code_ann, default) in [
        ("permanent-redirect", "permanent-redirect-code", 301u16),
        ("temporal-redirect", "temporal-redirect-code", 302),
    ] {
        let Some(url) = r.get(which).map(str::to_string) else {
            r.table(code_ann);
            continue;
        };
        let asked = r
            .get(code_ann)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(default);
        let code = if [301, 302, 303, 307, 308].contains(&asked) {
            asked
        } else {
            default
        };
        if code != asked {
            r.put(
                code_ann,
                Outcome::Differs,
                format!("statusCode {code}"),
                format!("{asked} is not a Gateway API redirect code; {code} is used"),
            );
        } else {
            r.table(code_ann);
        }
        match redirect_filter(&url, code) {
            Some((f, q)) if r.fx.redirect.is_none() => {
                let row = table::lookup(which).expect("in the table");
                let mut diff = row.difference.to_string();
                if let Some(q) = q {
                    diff = format!("{diff}; the query {q:?} of the target is dropped");
                }
                r.put(which, Outcome::Differs, row.becomes, diff);
                r.fx.redirect = Some(Redirect { filter: f });
            }
            Some(_) => r.put(
                which,
                Outcome::Unsupported,
                "ignored: permanent-redirect takes precedence",
                "",
            ),
            None => r.put(
                which,
                Outcome::Unsupported,
                format!("{url:?} is not an absolute URL: not converted"),
                "",
            ),
        }
    }
    r.fx.passthrough = r.flag("ssl-passthrough") == Some(true);
    r.table("ssl-passthrough");
    if let Some(root) = r.get("app-root") {
        r.fx.app_root = Some(root.to_string());
        r.table("app-root");
    }
}

fn read_backend(r: &mut Reader, inputs: &Inputs) {
    let proto = r.get("backend-protocol").map(|p| p.to_ascii_uppercase());
    let tls_ann = [
        "proxy-ssl-secret",
        "proxy-ssl-verify",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
    ];
    let wants_tls =
        matches!(proto.as_deref(), Some("HTTPS" | "GRPCS")) || r.get("proxy-ssl-secret").is_some();
    if let Some(p) = proto.as_deref() {
        let (o, res, diff) = match p {
            "HTTP" => (Outcome::Converted, "nothing: plain HTTP is the default".to_string(), String::new()),
            "GRPC" => (Outcome::Converted, "nothing: requests with a gRPC content type go upstream over HTTP/2 (h2c)".into(), String::new()),
            "HTTPS" | "GRPCS" => (Outcome::Differs, "a BackendTLSPolicy for each Service of this Ingress".into(),
                table::lookup("backend-protocol").expect("row").difference.to_string()),
            "H2C" => (Outcome::Differs, "nothing in the output: set `appProtocol: kubernetes.io/h2c` on the Service port so every request goes upstream over h2c".into(),
                "until the Service says so, only gRPC requests use HTTP/2 upstream".into()),
            other => (Outcome::Unsupported, format!("backend protocol {other} is not supported"), String::new()),
        };
        r.put("backend-protocol", o, res, diff);
    }
    if !wants_tls {
        for a in tls_ann {
            r.put(
                a,
                Outcome::Unsupported,
                "ignored: backend-protocol is not HTTPS or GRPCS",
                "",
            );
        }
        return;
    }
    let hostname = r.get("proxy-ssl-name").map(str::to_string);
    let mut ca = None;
    if let Some(s) = r.get("proxy-ssl-secret").map(str::to_string) {
        let (ns, name) = s
            .split_once('/')
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or((r.ns.clone(), s.clone()));
        let cm = format!("{name}-ca");
        if ns != r.ns {
            r.fx.notes.push(format!("proxy-ssl-secret {s}: the CA ConfigMap must be in namespace {}; it is expected there as {cm}", r.ns));
        }
        match inputs.secrets.get(&format!("{ns}/{name}")).and_then(|sec| crate::input::secret_value(sec, "ca.crt")) {
            Some(pem) => r.fx.objects.push(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": cm, "namespace": r.ns},
                "data": {"ca.crt": String::from_utf8_lossy(&pem)},
            })),
            None => r.fx.notes.push(format!(
                "create the CA ConfigMap: kubectl -n {} create configmap {cm} --from-literal=ca.crt=\"$(kubectl -n {ns} get secret {name} -o jsonpath='{{.data.ca\\.crt}}' | base64 -d)\"", r.ns)),
        }
        ca = Some(cm);
    }
    for a in tls_ann {
        if a == "proxy-ssl-verify" && r.get(a).is_some_and(|v| v.eq_ignore_ascii_case("on")) {
            r.put(
                a,
                Outcome::Converted,
                "a BackendTLSPolicy: the certificate is verified",
                "",
            );
        } else {
            r.table(a);
        }
    }
    r.fx.backend_tls = Some((hostname, ca));
}

fn read_timeouts(r: &mut Reader) {
    if let Some(secs) = r
        .get("proxy-read-timeout")
        .and_then(|v| v.parse::<u64>().ok())
    {
        r.fx.timeouts = Some(json!({"backendRequest": duration(secs)}));
    }
    r.table("proxy-read-timeout");
    let nu = r.get("proxy-next-upstream").map(str::to_string);
    let tries = r
        .get("proxy-next-upstream-tries")
        .and_then(|v| v.parse::<u32>().ok());
    r.table("proxy-next-upstream-tries");
    r.table("proxy-next-upstream-timeout");
    let Some(nu) = nu else {
        if tries.is_some() {
            r.fx.retry = Some(
                json!({"attempts": tries.unwrap_or(3).saturating_sub(1), "codes": [502, 503, 504]}),
            );
            r.fx.notes.push("proxy-next-upstream-tries without proxy-next-upstream: nginx's default `error timeout` is kept as retries on connection failures and 502, 503, 504".into());
        }
        return;
    };
    if nu.split_whitespace().any(|w| w == "off") {
        r.put("proxy-next-upstream", Outcome::Converted, "no retry", "");
        return;
    }
    let codes: Vec<u16> = nu
        .split_whitespace()
        .filter_map(|w| match w {
            "http_500" => Some(500),
            "http_502" => Some(502),
            "http_503" => Some(503),
            "http_504" => Some(504),
            "http_403" => Some(403),
            "http_404" => Some(404),
            "http_429" => Some(429),
            _ => None,
        })
        .collect();
    let attempts = tries.unwrap_or(3).saturating_sub(1);
    r.fx.retry = Some(json!({"attempts": attempts, "codes": codes}));
    r.table("proxy-next-upstream");
}

fn read_affinity(r: &mut Reader) {
    let family = [
        "session-cookie-name",
        "session-cookie-max-age",
        "session-cookie-expires",
    ];
    if r.get("affinity") != Some("cookie") {
        if r.get("affinity").is_some() {
            r.put(
                "affinity",
                Outcome::Unsupported,
                "only `cookie` affinity is supported",
                "",
            );
        }
        for a in family {
            r.put(
                a,
                Outcome::Unsupported,
                "ignored: affinity is not cookie",
                "",
            );
        }
        return;
    }
    let name = r
        .get("session-cookie-name")
        .unwrap_or("INGRESSCOOKIE")
        .to_string();
    let mut s = json!({"sessionName": name, "type": "Cookie"});
    let secs = r
        .get("session-cookie-max-age")
        .or(r.get("session-cookie-expires"))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(secs) = secs {
        s["absoluteTimeout"] = json!(duration(secs));
        s["cookieConfig"] = json!({"lifetimeType": "Permanent"});
    }
    r.fx.session = Some(s);
    r.table("affinity");
    for a in family {
        r.table(a);
    }
}

/// `8m` → bytes (nginx size syntax).
fn body_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let (num, mul) = match v.chars().last()? {
        'k' | 'K' => (&v[..v.len() - 1], 1024),
        'm' | 'M' => (&v[..v.len() - 1], 1024 * 1024),
        'g' | 'G' => (&v[..v.len() - 1], 1024 * 1024 * 1024),
        _ => (v, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mul)
}

#[cfg(test)]
mod tests {
    use super::{body_size, redirect_filter};
    use serde_json::json;

    #[test]
    fn nginx_sizes() {
        assert_eq!(body_size("8m"), Some(8 << 20));
        assert_eq!(body_size("512k"), Some(512 << 10));
        assert_eq!(body_size("1000"), Some(1000));
        assert_eq!(body_size("lots"), None);
    }

    #[test]
    fn redirect_urls_split_into_fields() {
        let (f, q) = redirect_filter("http://status.example.com:8080/down?from=x", 302).unwrap();
        assert_eq!(
            f,
            json!({"scheme": "http", "hostname": "status.example.com", "port": 8080, "statusCode": 302,
                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/down"}})
        );
        assert_eq!(q.as_deref(), Some("from=x"));
        assert!(redirect_filter("/relative", 301).is_none());
    }
}
