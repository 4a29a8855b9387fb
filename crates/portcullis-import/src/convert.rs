//! The conversion: Gateways per IngressClass, routes per Ingress host,
//! canaries merged, policies, grants.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{HTTPIngressPath, IngressBackend};
use serde_json::{Map, Value, json};

use crate::annotations::{self, Canary, Effects, Grant};
use crate::input::{Found, Inputs};
use crate::output::Object;
use crate::report::{IngressReport, Report};
use crate::{Conversion, Options, paths};

const GW_API: &str = "gateway.networking.k8s.io/v1";
const GW_GROUP: &str = "gateway.networking.k8s.io";
const MAX_RULES: usize = 16;

/// The objects a ReferenceGrant allows (kind, name) and the Ingresses needing it.
type GrantTargets = (BTreeSet<(String, String)>, BTreeSet<String>);

/// A route rule before rendering; `key` is the Ingress path it serves.
struct LRule {
    key: Option<(String, String)>,
    rule: Map<String, Value>,
}

/// An HTTPRoute before rendering (it may be split past 16 rules).
struct LRoute {
    ns: String,
    name: String,
    class: String,
    host: String,
    hostnames: Vec<String>,
    sections: Vec<String>,
    rules: Vec<LRule>,
    from: BTreeSet<String>,
    ingress: String,
    redirect_only: bool,
}

/// `*.Example.com` → `wildcard-example-com`.
fn slug(host: &str) -> String {
    let s: String = host
        .to_ascii_lowercase()
        .replace('*', "wildcard")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').to_string()
}

fn class_of(f: &Found, inputs: &Inputs) -> String {
    if let Some(c) = f
        .ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.clone())
    {
        return c;
    }
    if let Some(c) = f.annotations().get("kubernetes.io/ingress.class") {
        return c.clone();
    }
    inputs
        .classes
        .iter()
        .find(|(_, c)| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class"))
                .is_some_and(|v| v == "true")
        })
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| "nginx".into())
}

/// `(name, port)` of a Service backend, the port's number looked up when named.
fn backend_ref(b: &IngressBackend, ns: &str, inputs: &Inputs) -> Result<Value, String> {
    let Some(svc) = &b.service else {
        return Err("a resource backend cannot be converted (only Services)".into());
    };
    let port = svc.port.as_ref().ok_or("the Service backend has no port")?;
    if let Some(n) = port.number {
        return Ok(json!({"name": svc.name, "port": n}));
    }
    let pname = port.name.clone().unwrap_or_default();
    inputs
        .services
        .get(&format!("{ns}/{}", svc.name))
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .and_then(|ps| ps.iter().find(|p| p.name.as_deref() == Some(pname.as_str())))
        .map(|p| json!({"name": svc.name, "port": p.port}))
        .ok_or(format!(
            "Service {ns}/{} port {pname:?} is named and the Service is not in the input: give the port number (or include the Service)",
            svc.name
        ))
}

struct Listeners {
    /// host ("" for none) → (listener name, secret ns, secret name)
    tls: BTreeMap<String, (String, String, String)>,
    /// passthrough host → listener name
    passthrough: BTreeMap<String, String>,
    from: BTreeSet<String>,
}

impl Listeners {
    /// The HTTPS listener serving `host`.
    fn covering(&self, host: &str) -> Option<&str> {
        if let Some(l) = self.tls.get(host) {
            return Some(&l.0);
        }
        if let Some((_, rest)) = host.split_once('.')
            && let Some(l) = self.tls.get(&format!("*.{rest}"))
        {
            return Some(&l.0);
        }
        self.tls.get("").map(|l| l.0.as_str())
    }
}

struct Item<'a> {
    found: &'a Found,
    class: String,
    fx: Effects,
    notes: Vec<String>,
}

pub(crate) fn run(inputs: &Inputs, opts: &Options) -> Conversion {
    let gw_ns = opts
        .gateway_namespace
        .clone()
        .unwrap_or(opts.default_namespace.clone());
    let mut items: Vec<Item> = inputs
        .ingresses
        .iter()
        .map(|f| Item {
            found: f,
            class: class_of(f, inputs),
            fx: annotations::read(f, inputs),
            notes: vec![],
        })
        .collect();
    let mut objects: Vec<Object> = vec![];
    let mut grants: BTreeMap<Grant, BTreeSet<String>> = BTreeMap::new();

    // Listeners per class.
    let mut classes: BTreeMap<String, Listeners> = BTreeMap::new();
    for it in items.iter_mut() {
        let l = classes
            .entry(it.class.clone())
            .or_insert_with(|| Listeners {
                tls: BTreeMap::new(),
                passthrough: BTreeMap::new(),
                from: BTreeSet::new(),
            });
        l.from.insert(it.found.key());
        if it.fx.canary.is_some() {
            continue;
        }
        let spec = it.found.ingress.spec.clone().unwrap_or_default();
        if it.fx.passthrough {
            for h in spec.rules.iter().flatten().filter_map(|r| r.host.clone()) {
                l.passthrough
                    .entry(h.clone())
                    .or_insert(format!("tls-{}", slug(&h)));
            }
            continue;
        }
        for t in spec.tls.iter().flatten() {
            let Some(secret) = t.secret_name.clone() else {
                it.notes
                    .push("a spec.tls entry without secretName is not converted".into());
                continue;
            };
            let hosts = t
                .hosts
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| vec![String::new()]);
            for h in hosts {
                let name = if h.is_empty() {
                    "https".to_string()
                } else {
                    format!("https-{}", slug(&h))
                };
                match l.tls.get(&h) {
                    Some((_, ns, s))
                        if (ns.as_str(), s.as_str()) != (it.found.namespace(), secret.as_str()) =>
                    {
                        it.notes.push(format!("TLS host {h:?}: another Ingress's Secret {ns}/{s} already serves it; Secret {secret} is not used"));
                    }
                    Some(_) => {}
                    None => {
                        l.tls
                            .insert(h, (name, it.found.namespace().to_string(), secret.clone()));
                    }
                }
            }
        }
    }
    for l in classes.values_mut() {
        let pt: Vec<String> = l.passthrough.keys().cloned().collect();
        l.tls.retain(|h, _| !pt.contains(h));
    }

    // Routes.
    let mut routes: Vec<LRoute> = vec![];
    let mut tls_routes: Vec<Object> = vec![];
    for it in items.iter_mut().filter(|i| i.fx.canary.is_none()) {
        let ns = it.found.namespace().to_string();
        let ing = it.found.name().to_string();
        let key = it.found.key();
        let l = &classes[&it.class];
        let spec = it.found.ingress.spec.clone().unwrap_or_default();
        let mut groups: BTreeMap<String, (String, Vec<HTTPIngressPath>)> = BTreeMap::new();
        let mut order = vec![];
        for r in spec.rules.iter().flatten() {
            let host = r.host.clone().unwrap_or_default();
            let name = if host.is_empty() {
                format!("{ing}-any-host")
            } else {
                format!("{ing}-{}", slug(&host))
            };
            if !groups.contains_key(&host) {
                order.push(host.clone());
            }
            let g = groups.entry(host).or_insert((name, vec![]));
            g.1.extend(r.http.iter().flat_map(|h| h.paths.clone()));
        }
        if it.fx.passthrough {
            for host in &order {
                let (name, paths) = &groups[host];
                let backend = paths.first().map(|p| backend_ref(&p.backend, &ns, inputs));
                let Some(Ok(b)) = backend else {
                    it.notes.push(format!(
                        "ssl-passthrough host {host:?}: no Service backend to pass through to"
                    ));
                    continue;
                };
                let mut pr = json!({"name": it.class, "sectionName": l.passthrough[host]});
                if gw_ns != ns {
                    pr["namespace"] = json!(gw_ns);
                }
                tls_routes.push(Object {
                    value: json!({"apiVersion": GW_API, "kind": "TLSRoute", "metadata": {"name": name, "namespace": ns},
                        "spec": {"parentRefs": [pr], "hostnames": [host], "rules": [{"backendRefs": [b]}]}}),
                    from: vec![format!("Ingress {key}")],
                });
            }
            continue;
        }
        if let Some(db) = &spec.default_backend {
            order.push("\0default".into());
            groups.insert(
                "\0default".into(),
                (
                    format!("{ing}-default-backend"),
                    vec![HTTPIngressPath {
                        backend: db.clone(),
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                    }],
                ),
            );
        }
        for host in order {
            let (name, ipaths) = &groups[&host];
            let is_default = host == "\0default";
            let host = if is_default { String::new() } else { host };
            let mut rules = vec![];
            if let Some(root) = &it.fx.app_root {
                rules.push(LRule { key: None, rule: obj(json!({
                    "matches": [{"path": {"type": "Exact", "value": "/"}}],
                    "filters": [{"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplaceFullPath", "replaceFullPath": root}, "statusCode": 302}}]})) });
            }
            for p in ipaths {
                match build_rule(p, &it.fx, &ns, inputs) {
                    Ok((r, problem)) => {
                        if let Some(pr) = problem.filter(|_| it.fx.rewrite.is_none()) {
                            it.notes.push(pr);
                        }
                        rules.push(r);
                    }
                    Err(e) => it.notes.push(format!(
                        "path {:?}: {e}; the path is not converted",
                        p.path.as_deref().unwrap_or("/")
                    )),
                }
            }
            if rules.is_empty() {
                continue;
            }
            let mut hostnames = vec![];
            if !host.is_empty() {
                hostnames.push(host.clone());
                for a in &it.fx.aliases {
                    if !hostnames.contains(a) {
                        hostnames.push(a.clone());
                    }
                }
            }
            let covered = if is_default {
                l.tls.get("").map(|x| x.0.clone())
            } else {
                l.covering(&host).map(str::to_string)
            };
            let redirect = (covered.is_some() && it.fx.ssl_redirect) || it.fx.force_ssl_redirect;
            if it.fx.force_ssl_redirect && covered.is_none() {
                it.notes.push(format!("force-ssl-redirect on host {host:?} without TLS: every HTTP request is redirected and no listener serves the HTTPS side"));
            }
            let mut sections: Vec<String> = covered.into_iter().collect();
            if redirect {
                let rr: Vec<LRule> = rules.iter().map(|r| LRule { key: None, rule: obj(json!({
                    "matches": r.rule["matches"].clone(),
                    "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 308}}]})) }).collect();
                routes.push(LRoute {
                    ns: ns.clone(),
                    name: format!("{name}-ssl-redirect"),
                    class: it.class.clone(),
                    host: host.clone(),
                    hostnames: hostnames.clone(),
                    sections: vec!["http".into()],
                    rules: rr,
                    from: [key.clone()].into(),
                    ingress: key.clone(),
                    redirect_only: true,
                });
            } else {
                sections.push("http".into());
            }
            routes.push(LRoute {
                ns: ns.clone(),
                name: name.clone(),
                class: it.class.clone(),
                host: if is_default { "\0default".into() } else { host },
                hostnames,
                sections,
                rules,
                from: [key.clone()].into(),
                ingress: key.clone(),
                redirect_only: false,
            });
        }
    }

    // Canaries.
    for it in items.iter_mut() {
        let Some(c) = it.fx.canary.clone() else {
            continue;
        };
        let ns = it.found.namespace().to_string();
        let spec = it.found.ingress.spec.clone().unwrap_or_default();
        let mut merged = 0;
        for r in spec.rules.iter().flatten() {
            let host = r.host.clone().unwrap_or_default();
            for p in r.http.iter().flat_map(|h| &h.paths) {
                let path = p.path.clone().unwrap_or("/".into());
                let b = match backend_ref(&p.backend, &ns, inputs) {
                    Ok(b) => b,
                    Err(e) => {
                        it.notes.push(format!("path {path:?}: {e}"));
                        continue;
                    }
                };
                let k = (path.clone(), p.path_type.clone());
                let target = routes.iter_mut().find(|rt| {
                    !rt.redirect_only
                        && rt.class == it.class
                        && rt.ns == ns
                        && rt.host == host
                        && rt.rules.iter().any(|x| x.key.as_ref() == Some(&k))
                });
                let Some(rt) = target else {
                    it.notes.push(format!("no primary Ingress in namespace {ns} serves host {host:?} path {path:?}: this canary path is not converted"));
                    continue;
                };
                merge_canary(rt, &k, &c, b);
                rt.from.insert(it.found.key());
                merged += 1;
            }
        }
        if merged > 0 {
            it.notes.push(format!(
                "merged into the primary Ingress's HTTPRoute ({merged} paths)"
            ));
        }
    }

    // Render routes; policy targets per Ingress.
    let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rt in routes {
        let n = rt.rules.len().div_ceil(MAX_RULES);
        let mut rules = rt.rules.into_iter();
        for i in 0..n {
            let name = if i == 0 {
                rt.name.clone()
            } else {
                format!("{}-{}", rt.name, i + 1)
            };
            let chunk: Vec<Value> = rules
                .by_ref()
                .take(MAX_RULES)
                .map(|r| Value::Object(r.rule))
                .collect();
            let parents: Vec<Value> = rt
                .sections
                .iter()
                .map(|s| {
                    let mut p = json!({"name": rt.class, "sectionName": s});
                    if gw_ns != rt.ns {
                        p["namespace"] = json!(gw_ns);
                    }
                    p
                })
                .collect();
            let mut spec = json!({"parentRefs": parents, "rules": chunk});
            if !rt.hostnames.is_empty() {
                spec["hostnames"] = json!(rt.hostnames);
            }
            if !rt.redirect_only {
                targets
                    .entry(rt.ingress.clone())
                    .or_default()
                    .push(name.clone());
            }
            objects.push(Object {
                value: json!({"apiVersion": GW_API, "kind": "HTTPRoute", "metadata": {"name": name, "namespace": rt.ns}, "spec": spec}),
                from: rt.from.iter().map(|f| format!("Ingress {f}")).collect(),
            });
        }
    }
    objects.extend(tls_routes);

    // Policies, backend TLS, converted objects, grants.
    let mut backend_tls: BTreeMap<String, Object> = BTreeMap::new();
    for it in items.iter_mut().filter(|i| i.fx.canary.is_none()) {
        let key = it.found.key();
        let ns = it.found.namespace().to_string();
        let from = vec![format!("Ingress {key}")];
        let refs: Vec<Value> = targets
            .get(&key)
            .into_iter()
            .flatten()
            .map(|n| json!({"group": GW_GROUP, "kind": "HTTPRoute", "name": n}))
            .collect();
        let wants = !it.fx.security.is_empty() || !it.fx.rate_rules.is_empty();
        if wants && refs.is_empty() {
            it.notes.push(
                "no HTTPRoute was made for this Ingress, so its policies are not converted".into(),
            );
        }
        if !it.fx.security.is_empty() && !refs.is_empty() {
            let mut spec = it.fx.security.clone();
            spec.insert("targetRefs".into(), json!(refs));
            objects.push(Object {
                value: json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "SecurityPolicy",
                "metadata": {"name": it.found.name(), "namespace": ns}, "spec": spec}),
                from: from.clone(),
            });
        }
        if !it.fx.rate_rules.is_empty() && !refs.is_empty() {
            objects.push(Object { value: json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "BackendTrafficPolicy",
                "metadata": {"name": it.found.name(), "namespace": ns},
                "spec": {"targetRefs": refs, "rateLimit": {"local": {"rules": it.fx.rate_rules}}}}), from: from.clone() });
        }
        if let Some((hostname, ca)) = &it.fx.backend_tls {
            for svc in services_of(it.found) {
                let k = format!("{ns}/{svc}");
                if backend_tls.contains_key(&k) {
                    continue;
                }
                let mut validation =
                    json!({"hostname": hostname.clone().unwrap_or(format!("{svc}.{ns}.svc"))});
                match ca {
                    Some(cm) => {
                        validation["caCertificateRefs"] =
                            json!([{"group": "", "kind": "ConfigMap", "name": cm}])
                    }
                    None => validation["wellKnownCACertificates"] = json!("System"),
                }
                backend_tls.insert(k, Object { value: json!({"apiVersion": GW_API, "kind": "BackendTLSPolicy",
                    "metadata": {"name": format!("{svc}-backend-tls"), "namespace": ns},
                    "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": svc}], "validation": validation}}), from: from.clone() });
            }
        }
        for o in std::mem::take(&mut it.fx.objects) {
            objects.push(Object {
                value: o,
                from: from.clone(),
            });
        }
        for g in std::mem::take(&mut it.fx.grants) {
            grants.entry(g).or_default().insert(key.clone());
        }
    }
    objects.extend(backend_tls.into_values());

    // Gateways and the class.
    objects.push(Object {
        value: json!({"apiVersion": GW_API, "kind": "GatewayClass", "metadata": {"name": opts.gateway_class},
            "spec": {"controllerName": "portcullis.dev/gateway-controller"}}),
        from: vec!["portcullis import (the GatewayClass of the Gateways below)".into()],
    });
    for (class, l) in &classes {
        let mut listeners = vec![
            json!({"name": "http", "port": opts.http_port, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}),
        ];
        for (host, (name, sns, secret)) in &l.tls {
            let mut cref = json!({"kind": "Secret", "name": secret});
            if *sns != gw_ns {
                cref["namespace"] = json!(sns);
                let g = Grant {
                    ns: sns.clone(),
                    from_group: GW_GROUP.into(),
                    from_kind: "Gateway".into(),
                    from_ns: gw_ns.clone(),
                    to_kind: "Secret".into(),
                    to_name: secret.clone(),
                };
                grants
                    .entry(g)
                    .or_default()
                    .insert(format!("IngressClass {class}"));
            }
            let mut li = json!({"name": name, "port": opts.https_port, "protocol": "HTTPS",
                "tls": {"mode": "Terminate", "certificateRefs": [cref]}, "allowedRoutes": {"namespaces": {"from": "All"}}});
            if !host.is_empty() {
                li["hostname"] = json!(host);
            }
            listeners.push(li);
        }
        for (host, name) in &l.passthrough {
            listeners.push(json!({"name": name, "port": opts.https_port, "protocol": "TLS", "hostname": host,
                "tls": {"mode": "Passthrough"}, "allowedRoutes": {"namespaces": {"from": "All"}, "kinds": [{"kind": "TLSRoute"}]}}));
        }
        let mut from = vec![format!("IngressClass {class}")];
        from.extend(l.from.iter().map(|f| format!("Ingress {f}")));
        objects.push(Object { value: json!({"apiVersion": GW_API, "kind": "Gateway", "metadata": {"name": class, "namespace": gw_ns},
            "spec": {"gatewayClassName": opts.gateway_class, "listeners": listeners}}), from });
    }

    // ReferenceGrants: one per (namespace, referrer kind and namespace).
    let mut by: BTreeMap<(String, String, String, String), GrantTargets> = BTreeMap::new();
    for (g, f) in grants {
        let e = by
            .entry((g.ns, g.from_group, g.from_kind, g.from_ns))
            .or_default();
        e.0.insert((g.to_kind, g.to_name));
        e.1.extend(f);
    }
    for ((ns, group, kind, from_ns), (to, f)) in by {
        let to: Vec<Value> = to
            .into_iter()
            .map(|(k, n)| json!({"group": "", "kind": k, "name": n}))
            .collect();
        objects.push(Object {
            value: json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
                "metadata": {"name": format!("from-{from_ns}-{}", kind.to_ascii_lowercase()), "namespace": ns},
                "spec": {"from": [{"group": group, "kind": kind, "namespace": from_ns}], "to": to}}),
            from: f.into_iter().map(|x| if x.starts_with("IngressClass") { x } else { format!("Ingress {x}") }).collect(),
        });
    }

    objects.sort_by_key(Object::sort_key);
    objects.dedup_by(|a, b| a.sort_key() == b.sort_key());
    let mut report = Report::default();
    for it in items {
        let mut notes = it.fx.notes;
        notes.extend(it.notes);
        report.ingresses.push(IngressReport {
            ingress: it.found.key(),
            file: it.found.file.clone(),
            entries: it.fx.entries,
            notes,
        });
    }
    for (kind, n) in &inputs.skipped {
        report
            .notes
            .push(format!("{n} {kind} object(s) in the input were not used"));
    }
    Conversion { objects, report }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Every Service name an Ingress sends to.
fn services_of(f: &Found) -> BTreeSet<String> {
    let spec = f.ingress.spec.clone().unwrap_or_default();
    spec.rules
        .iter()
        .flatten()
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.clone()))
        .map(|p| p.backend)
        .chain(spec.default_backend)
        .filter_map(|b| b.service.map(|s| s.name))
        .collect()
}

/// One route rule for one Ingress path; the path's problem, if any.
fn build_rule(
    p: &HTTPIngressPath,
    fx: &Effects,
    ns: &str,
    inputs: &Inputs,
) -> Result<(LRule, Option<String>), String> {
    let backend = backend_ref(&p.backend, ns, inputs)?;
    let path = p.path.clone().unwrap_or("/".into());
    let o = paths::convert(&path, &p.path_type, fx.regex, fx.rewrite.as_deref());
    let mut rule = Map::new();
    rule.insert("matches".into(), json!([{"path": o.path}]));
    let mut filters = vec![];
    if let Some(r) = &fx.redirect {
        filters.push(json!({"type": "RequestRedirect", "requestRedirect": r.filter}));
    } else {
        let mut rw = Map::new();
        if let Some(pth) = o.rewrite {
            rw.insert("path".into(), pth);
        }
        if let Some(h) = &fx.upstream_vhost {
            rw.insert("hostname".into(), json!(h));
        }
        if !rw.is_empty() {
            filters.push(json!({"type": "URLRewrite", "urlRewrite": rw}));
        }
        if let Some(pfx) = &fx.forwarded_prefix {
            filters.push(json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-Forwarded-Prefix", "value": pfx}]}}));
        }
        rule.insert("backendRefs".into(), json!([backend]));
        if let Some(t) = &fx.timeouts {
            rule.insert("timeouts".into(), t.clone());
        }
        if let Some(r) = &fx.retry {
            rule.insert("retry".into(), r.clone());
        }
        if let Some(s) = &fx.session {
            rule.insert("sessionPersistence".into(), s.clone());
        }
    }
    if !filters.is_empty() {
        rule.insert("filters".into(), json!(filters));
    }
    Ok((
        LRule {
            key: Some((path, p.path_type.clone())),
            rule,
        },
        o.problem,
    ))
}

/// Merge a canary backend into the primary's rule `k` of `rt`.
fn merge_canary(rt: &mut LRoute, k: &(String, String), c: &Canary, canary: Value) {
    let Some(idx) = rt.rules.iter().position(|x| x.key.as_ref() == Some(k)) else {
        return;
    };
    if !rt.rules[idx].rule.contains_key("backendRefs") {
        return;
    }
    let base = rt.rules[idx].rule.clone();
    let path_match = base["matches"][0]["path"].clone();
    let primary = base["backendRefs"].clone();
    let with = |headers: Value, backends: Value| {
        let mut r = base.clone();
        r.insert(
            "matches".into(),
            json!([{"path": path_match, "headers": headers}]),
        );
        r.insert("backendRefs".into(), backends);
        LRule { key: None, rule: r }
    };
    let mut extra = vec![];
    if let Some(h) = &c.header {
        if let Some(v) = &c.header_value {
            extra.push(with(json!([{"name": h, "value": v}]), json!([canary])));
        } else if let Some(pat) = &c.header_pattern {
            extra.push(with(
                json!([{"type": "RegularExpression", "name": h, "value": pat}]),
                json!([canary]),
            ));
        } else {
            extra.push(with(
                json!([{"name": h, "value": "always"}]),
                json!([canary]),
            ));
            extra.push(with(
                json!([{"name": h, "value": "never"}]),
                primary.clone(),
            ));
        }
    }
    if let Some(cookie) = &c.cookie {
        let re = format!("(.*;\\s*)?{}=always(\\s*;.*)?", cookie.replace('.', "\\."));
        extra.push(with(
            json!([{"type": "RegularExpression", "name": "Cookie", "value": re}]),
            json!([canary]),
        ));
    }
    if let Some(w) = c.weight {
        let w = w.min(c.total);
        let mut refs: Vec<Value> = primary.as_array().cloned().unwrap_or_default();
        for r in refs.iter_mut() {
            r["weight"] = json!(c.total - w);
        }
        let mut cw = canary.clone();
        cw["weight"] = json!(w);
        refs.push(cw);
        rt.rules[idx].rule.insert("backendRefs".into(), json!(refs));
    }
    rt.rules.extend(extra);
}
