//! The SecurityPolicy and BackendTrafficPolicy annotations: CORS, source
//! ranges, rate limits, basic auth, external auth.

use serde_json::json;

use super::{Grant, Reader, list};
use crate::input::Inputs;
use crate::report::Outcome;
use crate::{duration, secrets, table};

pub(super) fn read_cors(r: &mut Reader) {
    let family = [
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-allow-credentials",
        "cors-max-age",
        "cors-expose-headers",
    ];
    if r.flag("enable-cors") != Some(true) {
        r.table("enable-cors");
        for a in family {
            r.put(
                a,
                Outcome::Unsupported,
                "ignored: enable-cors is not \"true\" (as in ingress-nginx)",
                "",
            );
        }
        return;
    }
    let origins = list(r.get("cors-allow-origin").unwrap_or("*"));
    let methods = list(
        r.get("cors-allow-methods")
            .unwrap_or("GET, PUT, POST, DELETE, PATCH, OPTIONS"),
    );
    let headers = list(r.get("cors-allow-headers").unwrap_or("DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"));
    let expose = list(r.get("cors-expose-headers").unwrap_or(""));
    let creds = r
        .get("cors-allow-credentials")
        .is_none_or(|v| v.eq_ignore_ascii_case("true"));
    let max_age = r
        .get("cors-max-age")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1_728_000);
    let mut cors = json!({"allowOrigins": origins, "allowMethods": methods, "allowHeaders": headers, "maxAge": duration(max_age), "allowCredentials": creds});
    if !expose.is_empty() {
        cors["exposeHeaders"] = json!(expose);
    }
    r.fx.security.insert("cors".into(), cors);
    r.table("enable-cors");
    for a in family {
        r.table(a);
    }
}

pub(super) fn read_ranges(r: &mut Reader) {
    let allow = r
        .get("whitelist-source-range")
        .map(list)
        .unwrap_or_default();
    let deny = r.get("denylist-source-range").map(list).unwrap_or_default();
    if allow.is_empty() && deny.is_empty() {
        return;
    }
    let mut rules = vec![];
    if !deny.is_empty() {
        rules.push(json!({"name": "denylist-source-range", "action": "Deny", "principal": {"clientCIDRs": deny}}));
    }
    if !allow.is_empty() {
        rules.push(json!({"name": "whitelist-source-range", "action": "Allow", "principal": {"clientCIDRs": allow}}));
    }
    let default = if allow.is_empty() { "Allow" } else { "Deny" };
    r.fx.security.insert(
        "authorization".into(),
        json!({"defaultAction": default, "rules": rules}),
    );
    r.table("whitelist-source-range");
    r.table("denylist-source-range");
}

pub(super) fn read_limits(r: &mut Reader) {
    for (ann, unit) in [("limit-rps", "Second"), ("limit-rpm", "Minute")] {
        let Some(n) = r
            .get(ann)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
        else {
            r.table(ann);
            continue;
        };
        for cidr in ["0.0.0.0/0", "::/0"] {
            r.fx.rate_rules.push(json!({
                "clientSelectors": [{"sourceCIDR": {"type": "Distinct", "value": cidr}}],
                "limit": {"requests": n, "unit": unit},
                "shared": true,
            }));
        }
        r.table(ann);
    }
    r.table("limit-burst-multiplier");
}

pub(super) fn read_basic_auth(r: &mut Reader, inputs: &Inputs) {
    let family = ["auth-secret", "auth-secret-type", "auth-realm"];
    let ty = r.get("auth-type").map(|t| t.to_ascii_lowercase());
    match ty.as_deref() {
        None => {
            for a in family {
                r.put(
                    a,
                    Outcome::Unsupported,
                    "ignored: no auth-type (as in ingress-nginx)",
                    "",
                );
            }
            return;
        }
        Some("basic") => {}
        Some(other) => {
            r.put(
                "auth-type",
                Outcome::Unsupported,
                format!("auth-type {other} is not supported (only basic)"),
                "",
            );
            for a in family {
                r.put(
                    a,
                    Outcome::Unsupported,
                    "ignored: auth-type is not basic",
                    "",
                );
            }
            return;
        }
    }
    let Some(secret) = r.get("auth-secret").map(str::to_string) else {
        r.put(
            "auth-type",
            Outcome::Unsupported,
            "auth-type basic without auth-secret: nothing to convert",
            "",
        );
        return;
    };
    r.table("auth-type");
    let (ns, name) = secret
        .split_once('/')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .unwrap_or((r.ns.clone(), secret.clone()));
    let map = r.get("auth-secret-type").is_some_and(|t| t == "auth-map");
    let out_name = format!("{name}-htpasswd");
    let mut users = json!({"name": out_name});
    if ns != r.ns {
        users["namespace"] = json!(ns);
        r.fx.grants.push(Grant {
            ns: ns.clone(),
            from_group: "portcullis.dev".into(),
            from_kind: "SecurityPolicy".into(),
            from_ns: r.ns.clone(),
            to_kind: "Secret".into(),
            to_name: out_name.clone(),
        });
    }
    r.fx.security
        .insert("basicAuth".into(), json!({"users": users}));
    let row = table::lookup("auth-secret").expect("row");
    match inputs.secrets.get(&format!("{ns}/{name}")) {
        Some(s) => {
            let (obj, warnings) = secrets::htpasswd(s, &ns, &out_name, map);
            r.fx.objects.push(obj);
            let mut diff = row.difference.to_string();
            for w in warnings {
                diff.push_str("; ");
                diff.push_str(&w);
            }
            r.put("auth-secret", Outcome::Differs, format!("SecurityPolicy `basicAuth.users`: Secret {ns}/{out_name} (converted from {ns}/{name}, key `.htpasswd`)"), diff);
        }
        None => {
            r.put("auth-secret", Outcome::Differs, format!("SecurityPolicy `basicAuth.users`: Secret {ns}/{out_name}, which is not in the input: create it"), row.difference);
            let key = if map { "<user>" } else { "auth" };
            r.fx.notes.push(format!(
                "create Secret {ns}/{out_name}: kubectl -n {ns} create secret generic {out_name} --from-literal=.htpasswd=\"$(kubectl -n {ns} get secret {name} -o jsonpath='{{.data.{key}}}' | base64 -d)\""
            ));
        }
    }
    r.table("auth-secret-type");
    r.table("auth-realm");
}

/// `http://name.ns.svc.cluster.local:port/path` → (name, ns, port, path).
fn service_url(url: &str, default_ns: &str) -> Option<(String, String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let host = host.strip_suffix(".svc").unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    let (name, ns) = match parts.as_slice() {
        [n] => (n.to_string(), default_ns.to_string()),
        [n, ns] => (n.to_string(), ns.to_string()),
        _ => return None,
    };
    let path = path.split('?').next().unwrap_or_default();
    Some((
        name,
        ns,
        port,
        if path == "/" {
            String::new()
        } else {
            path.to_string()
        },
    ))
}

pub(super) fn read_ext_auth(r: &mut Reader) {
    let Some(url) = r.get("auth-url").map(str::to_string) else {
        r.put(
            "auth-response-headers",
            Outcome::Unsupported,
            "ignored: no auth-url",
            "",
        );
        return;
    };
    let Some((name, ns, port, path)) = service_url(&url, &r.ns) else {
        r.put("auth-url", Outcome::Unsupported, format!(
            "{url:?} does not name a cluster Service over plain HTTP (`http://svc.ns.svc.cluster.local:port/path`): \
             SecurityPolicy extAuth calls a Service; put the service in the cluster, or front it with a Service"), "");
        r.put(
            "auth-response-headers",
            Outcome::Unsupported,
            "ignored: auth-url was not converted",
            "",
        );
        return;
    };
    let mut backend = json!({"name": name, "port": port});
    if ns != r.ns {
        backend["namespace"] = json!(ns);
        r.fx.grants.push(Grant {
            ns: ns.clone(),
            from_group: "portcullis.dev".into(),
            from_kind: "SecurityPolicy".into(),
            from_ns: r.ns.clone(),
            to_kind: "Service".into(),
            to_name: name.clone(),
        });
    }
    let mut http = json!({"backendRefs": [backend]});
    if !path.is_empty() {
        http["path"] = json!(path);
    }
    if let Some(h) = r.get("auth-response-headers") {
        http["headersToBackend"] = json!(list(h));
    }
    r.fx.security
        .insert("extAuth".into(), json!({"http": http}));
    r.table("auth-url");
    r.table("auth-response-headers");
}

#[cfg(test)]
mod tests {
    use super::service_url;

    #[test]
    fn auth_urls_naming_a_service_convert() {
        assert_eq!(
            service_url(
                "http://oauth.auth.svc.cluster.local:4180/oauth2/auth",
                "apps"
            ),
            Some(("oauth".into(), "auth".into(), 4180, "/oauth2/auth".into()))
        );
        assert_eq!(
            service_url("http://authz/check", "apps"),
            Some(("authz".into(), "apps".into(), 80, "/check".into()))
        );
        assert_eq!(
            service_url("http://authz.team.svc", "apps"),
            Some(("authz".into(), "team".into(), 80, String::new()))
        );
    }

    #[test]
    fn external_or_tls_auth_urls_do_not() {
        assert_eq!(service_url("https://auth.example.com/check", "apps"), None);
        assert_eq!(
            service_url("http://auth.partner.example.net/check", "apps"),
            None
        );
    }
}
