//! The dashboard, `/ui` on the admin address: a read-only page of every
//! Gateway, listener and route with its conditions in plain words, attached
//! policies, backends with their endpoints, live request rate, error rate
//! and latency per route, the latest configuration problems (file:line) and
//! an "explain a request" form (calling `/explain`).
//!
//! The page is plain HTML, CSS and JavaScript embedded in the binary
//! (`include_str!`; nothing is fetched from elsewhere, and the
//! Content-Security-Policy forbids it). It polls [`STATE_PATH`], a JSON
//! document built here on request from what the admin API already holds
//! (the status document, the IR, the problem list) and from the metrics
//! registry's own exposition ([`stats`]); rates are the differences between
//! two polls, computed by the page.

pub mod stats;
pub mod words;

use std::collections::BTreeMap;

use bytes::Bytes;
use portcullis_ir::{Backend, Config, WeightedBackend};
use serde_json::{Value, json};

use crate::admin::AdminView;
use crate::report::status_document;

/// The JSON document the page polls.
pub const STATE_PATH: &str = "/ui/api/state";

/// The Content-Security-Policy of the page: its own assets only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("index.html");
const APP: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The embedded asset at `path`: (content type, body).
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/ui" | "/ui/" => Some(("text/html; charset=utf-8", INDEX)),
        "/ui/app.js" => Some(("text/javascript; charset=utf-8", APP)),
        "/ui/style.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

/// A condition with its plain words.
fn condition(c: &Value) -> Value {
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    let (type_, status, reason) = (s("type"), s("status"), s("reason"));
    let words = words::explain(&type_, &status, &reason);
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": s("message"),
        "ok": words::is_ok(&type_, &status),
        "meaning": words.map(|w| w.0),
        "fix": words.map(|w| w.1),
    })
}

fn conditions(v: &Value) -> Vec<Value> {
    v.as_array()
        .map(|a| a.iter().map(condition).collect())
        .unwrap_or_default()
}

/// `Gateway infra/edge (section http)`.
fn parent_words(r: &Value) -> String {
    let kind = r["kind"].as_str().unwrap_or("Gateway");
    let mut s = format!("{kind} ");
    if let Some(ns) = r["namespace"].as_str() {
        s.push_str(&format!("{ns}/"));
    }
    s.push_str(r["name"].as_str().unwrap_or_default());
    if let Some(sec) = r["sectionName"].as_str() {
        s.push_str(&format!(" (section {sec})"));
    }
    if let Some(p) = r["port"].as_u64() {
        s.push_str(&format!(" (port {p})"));
    }
    s
}

/// What the IR says about one route: where it is served, its backends and policies.
#[derive(Default)]
struct Served {
    listeners: Vec<String>,
    hostnames: Vec<String>,
    backends: BTreeMap<String, Value>,
    policies: Vec<String>,
}

/// Endpoint states by (backend, endpoint address).
type HealthMap = BTreeMap<(String, std::net::SocketAddr), &'static str>;

/// The endpoints' states: this process's data plane (`healthy`,
/// `slow_start`, `ejected`, `unhealthy`: [`portcullis_obs::health`]), then,
/// for endpoints no data plane here uses (a controller, whose proxies run
/// elsewhere), the proxies' `portcullis_endpoint_healthy` series in `extra`
/// (`healthy` or `out_of_service`), when they expose them.
fn health_map(extra: &str) -> HealthMap {
    let mut out = HealthMap::new();
    for (backend, eps) in portcullis_obs::metrics().health.snapshot() {
        for (addr, h) in eps {
            out.insert((backend.clone(), addr), h.as_str());
        }
    }
    for (k, up) in stats::endpoint_health(extra) {
        out.entry(k)
            .or_insert(if up { "healthy" } else { "out_of_service" });
    }
    out
}

/// A backend with its endpoints, each with its `health` from
/// [`health_map`] (null when unknown).
fn backend_entry(b: &WeightedBackend, health: &HealthMap) -> (String, Value) {
    match &b.backend {
        Backend::Service(s) => (
            s.name.clone(),
            json!({
                "name": s.name,
                "endpoints": s.endpoints.iter().map(|e| json!({
                    "address": e.addr.to_string(),
                    "terminating": e.terminating,
                    "health": health.get(&(s.name.clone(), e.addr)),
                })).collect::<Vec<_>>(),
                "tls": s.tls.as_ref().map(|t| t.hostname.clone()),
                "invalid": Value::Null,
            }),
        ),
        Backend::Invalid { reason } => (
            format!("invalid: {reason}"),
            json!({"name": "(invalid)", "endpoints": [], "tls": null, "invalid": reason}),
        ),
    }
}

fn served(config: &Config, extra: &str) -> BTreeMap<(String, String), Served> {
    // Read once per render, from the registry the data plane keeps (no lock
    // on the request path) and the proxies' exposition.
    let health = health_map(extra);
    let mut out: BTreeMap<(String, String), Served> = BTreeMap::new();
    let push = |v: &mut Vec<String>, s: &str| {
        if !v.iter().any(|x| x == s) {
            v.push(s.to_string());
        }
    };
    for port in &config.ports {
        for l in &port.listeners {
            for r in &l.http_routes {
                let m = &r.meta;
                let e = out
                    .entry((m.kind.clone(), format!("{}/{}", m.namespace, m.name)))
                    .or_default();
                push(&mut e.listeners, &l.name);
                for h in &r.hostnames {
                    push(&mut e.hostnames, h);
                }
                for b in &r.action.backends {
                    let (k, v) = backend_entry(b, &health);
                    e.backends.insert(k, v);
                }
                if let Some(s) = &r.action.security {
                    push(&mut e.policies, &format!("SecurityPolicy {}", s.policy));
                }
            }
            for r in &l.l4_routes {
                let m = &r.meta;
                let e = out
                    .entry((m.kind.clone(), format!("{}/{}", m.namespace, m.name)))
                    .or_default();
                push(&mut e.listeners, &l.name);
                for b in &r.backends {
                    let (k, v) = backend_entry(b, &health);
                    e.backends.insert(k, v);
                }
            }
        }
    }
    out
}

fn listeners(view: &AdminView, key: &portcullis_store::ObjectKey, status: &Value) -> Vec<Value> {
    let Some(gw) = view.snapshot.gateways.get(key) else {
        return vec![];
    };
    gw.spec
        .listeners
        .iter()
        .map(|l| {
            let st = status["listeners"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == l.name.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "name": l.name,
                "port": l.port,
                "protocol": l.protocol,
                "hostname": l.hostname,
                "attachedRoutes": st["attachedRoutes"],
                "conditions": conditions(&st["conditions"]),
            })
        })
        .collect()
}

/// The dashboard's document: `{ready, mode, time_ms, gateways, routes,
/// policies, others, stats, problems}` (`mode`: `standalone` or
/// `kubernetes`).
///
/// `extra` is more OpenMetrics text to count traffic from (the proxies', in
/// Kubernetes mode); series with the same labels add up.
pub fn state_json(view: Option<&AdminView>, extra: &str) -> Bytes {
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut text = portcullis_obs::render();
    text.push_str(extra);
    let stats = stats::from_exposition(&text);
    let Some(view) = view else {
        let doc = json!({"ready": false, "time_ms": time_ms, "gateways": [], "routes": [],
            "policies": [], "others": [], "stats": stats, "problems": []});
        return Bytes::from(doc.to_string());
    };
    let mut doc = status_document(&view.snapshot, &view.statuses);
    crate::admin::redact(&mut doc);
    let mut served = served(&view.config, extra);
    let (mut gateways, mut routes, mut policies, mut others) = (vec![], vec![], vec![], vec![]);
    for o in doc.as_array().into_iter().flatten() {
        let kind = o["kind"].as_str().unwrap_or_default();
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let full = if ns.is_empty() {
            name.to_string()
        } else {
            format!("{ns}/{name}")
        };
        let status = &o["status"];
        match kind {
            "Gateway" => {
                let key = portcullis_store::ObjectKey {
                    namespace: ns.into(),
                    name: name.into(),
                };
                gateways.push(json!({
                    "name": full,
                    "addresses": status["addresses"].as_array().map(|a| a.iter()
                        .filter_map(|x| x["value"].as_str()).collect::<Vec<_>>()),
                    "conditions": conditions(&status["conditions"]),
                    "listeners": listeners(view, &key, status),
                }));
            }
            k if k.ends_with("Route") => {
                let s = served
                    .remove(&(k.to_string(), full.clone()))
                    .unwrap_or_default();
                let parents: Vec<Value> = status["parents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        json!({
                            "parent": parent_words(&p["parentRef"]),
                            "conditions": conditions(&p["conditions"]),
                        })
                    })
                    .collect();
                routes.push(json!({
                    "kind": k,
                    "name": full,
                    "parents": parents,
                    "listeners": s.listeners,
                    "hostnames": s.hostnames,
                    "backends": s.backends.into_values().collect::<Vec<_>>(),
                    "policies": s.policies,
                }));
            }
            _ if status.get("ancestors").is_some() => {
                let ancestors: Vec<Value> = status["ancestors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        json!({
                            "ancestor": parent_words(&a["ancestorRef"]),
                            "conditions": conditions(&a["conditions"]),
                        })
                    })
                    .collect();
                policies.push(json!({"kind": kind, "name": full, "ancestors": ancestors}));
            }
            _ => others.push(json!({
                "kind": kind,
                "name": full,
                "conditions": conditions(&status["conditions"]),
            })),
        }
    }
    let problems: Vec<Value> = view
        .problems
        .iter()
        .map(|p| {
            json!({
                "file": p.file.as_ref().map(|f| f.display().to_string()),
                "line": p.line,
                "source": p.source,
                "kind": p.kind,
                "name": match (&p.namespace, &p.name) {
                    (Some(ns), Some(n)) if !ns.is_empty() => Some(format!("{ns}/{n}")),
                    (_, n) => n.clone(),
                },
                "reason": p.reason,
                "text": p.line(),
            })
        })
        .collect();
    let doc = json!({
        "ready": true,
        "mode": if view.kubernetes { "kubernetes" } else { "standalone" },
        "time_ms": time_ms,
        "gateways": gateways,
        "routes": routes,
        "policies": policies,
        "others": others,
        "stats": stats,
        "problems": problems,
    });
    Bytes::from(doc.to_string())
}
