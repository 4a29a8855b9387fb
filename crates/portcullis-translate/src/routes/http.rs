//! HTTPRoute rules → IR: matches, filters, backends, timeouts, retries, session persistence.

use portcullis_ir as ir;

use super::{Built, Ctx, duration_ms};
use crate::backends;
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::model::{
    BackendRefSpec, FilterSpec, HeaderModSpec, HttpMatchSpec, HttpRule, NameValue, PathModSpec,
    PathSpec,
};
use crate::wire;

pub(super) fn header_mod(m: &HeaderModSpec) -> ir::HeaderModifier {
    ir::HeaderModifier {
        set: m
            .set
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        add: m
            .add
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
        remove: m.remove.iter().map(|h| h.to_ascii_lowercase()).collect(),
    }
}

fn path_mod(p: &PathModSpec) -> Option<ir::PathModifier> {
    match p.type_.as_str() {
        "ReplaceFullPath" => Some(ir::PathModifier::ReplaceFullPath(
            p.replace_full_path.clone().unwrap_or_default(),
        )),
        "ReplacePrefixMatch" => Some(ir::PathModifier::ReplacePrefixMatch(
            p.replace_prefix_match.clone().unwrap_or_default(),
        )),
        _ => None,
    }
}

/// Problems found while converting filters.
#[derive(Default)]
pub(super) struct FilterIssues {
    pub unresolved: Option<Problem>,
    pub invalid: Option<Problem>,
    /// A value that must never reach the wire: the whole rule is dropped.
    pub unsafe_value: Option<Problem>,
}

fn check_header_mod(field: &str, m: &HeaderModSpec) -> Result<(), String> {
    for h in m.set.iter().chain(&m.add) {
        wire::token("header name", &h.name).map_err(|e| format!("{field}: {e}"))?;
        wire::header_value(&h.name, &h.value).map_err(|e| format!("{field}: {e}"))?;
    }
    for n in &m.remove {
        wire::token("header name", n).map_err(|e| format!("{field}.remove: {e}"))?;
    }
    Ok(())
}

fn check_path_mod(field: &str, p: &PathModSpec) -> Result<(), String> {
    if let Some(v) = &p.replace_full_path {
        wire::path(v).map_err(|e| format!("{field}.replaceFullPath: {e}"))?;
    }
    if let Some(v) = &p.replace_prefix_match {
        wire::prefix(v).map_err(|e| format!("{field}.replacePrefixMatch: {e}"))?;
    }
    Ok(())
}

fn token_or_star(field: &str, v: &str) -> Result<(), String> {
    if v == "*" {
        return Ok(());
    }
    wire::token(field, v)
}

/// Why a filter's configuration could put unsafe bytes on the wire, if it could.
fn unsafe_value(f: &FilterSpec) -> Result<(), String> {
    if let Some(m) = &f.request_header_modifier {
        check_header_mod("requestHeaderModifier", m)?;
    }
    if let Some(m) = &f.response_header_modifier {
        check_header_mod("responseHeaderModifier", m)?;
    }
    if let Some(r) = &f.request_redirect {
        if let Some(s) = &r.scheme
            && s != "http"
            && s != "https"
        {
            return Err(format!(
                "requestRedirect.scheme {s:?} must be \"http\" or \"https\""
            ));
        }
        if let Some(h) = &r.hostname {
            wire::hostname(h).map_err(|e| format!("requestRedirect.hostname: {e}"))?;
        }
        if let Some(p) = &r.path {
            check_path_mod("requestRedirect.path", p)?;
        }
    }
    if let Some(r) = &f.url_rewrite {
        if let Some(h) = &r.hostname {
            wire::hostname(h).map_err(|e| format!("urlRewrite.hostname: {e}"))?;
        }
        if let Some(p) = &r.path {
            check_path_mod("urlRewrite.path", p)?;
        }
    }
    if let Some(c) = &f.cors {
        for o in &c.allow_origins {
            wire::origin(o).map_err(|e| format!("cors.allowOrigins: {e}"))?;
        }
        for m in &c.allow_methods {
            token_or_star("cors.allowMethods", m)?;
        }
        for h in &c.allow_headers {
            token_or_star("cors.allowHeaders", h)?;
        }
        for h in &c.expose_headers {
            token_or_star("cors.exposeHeaders", h)?;
        }
    }
    Ok(())
}

/// Convert filters (rule-level or backendRef-level) of a route in `ns`.
pub(super) fn filters(
    ctx: &Ctx<'_>,
    route_kind: &str,
    ns: &str,
    specs: &[FilterSpec],
    issues: &mut FilterIssues,
) -> Vec<ir::HttpFilter> {
    let mut out = vec![];
    for f in specs {
        if let Err(msg) = unsafe_value(f) {
            issues
                .unsafe_value
                .get_or_insert(Problem::new(Reason::UnsupportedValue, msg.clone()));
            out.push(ir::HttpFilter::Invalid { reason: msg });
            continue;
        }
        let filter = match f.type_ {
            "RequestHeaderModifier" => f
                .request_header_modifier
                .as_ref()
                .map(|m| ir::HttpFilter::RequestHeaderModifier(header_mod(m))),
            "ResponseHeaderModifier" => f
                .response_header_modifier
                .as_ref()
                .map(|m| ir::HttpFilter::ResponseHeaderModifier(header_mod(m))),
            "RequestRedirect" => f.request_redirect.as_ref().map(|r| {
                ir::HttpFilter::RequestRedirect(ir::Redirect {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    path: r.path.as_ref().and_then(path_mod),
                    port: r.port.map(|p| p as u16),
                    status_code: r.status_code.unwrap_or(302),
                })
            }),
            "URLRewrite" => f.url_rewrite.as_ref().map(|r| {
                ir::HttpFilter::UrlRewrite(ir::UrlRewrite {
                    hostname: r.hostname.clone(),
                    path: r.path.as_ref().and_then(path_mod),
                })
            }),
            "RequestMirror" => f.request_mirror.as_ref().map(|m| {
                let res = backends::service(ctx.input, ctx.grants, route_kind, ns, &m.backend_ref);
                if let Some(p) = res.problem {
                    issues.unresolved.get_or_insert(p);
                }
                let (numerator, denominator) = match (m.fraction, m.percent) {
                    (Some((n, d)), _) => (n, d.unwrap_or(100)),
                    (None, Some(p)) => (p, 100),
                    (None, None) => (100, 100),
                };
                ir::HttpFilter::RequestMirror(ir::Mirror {
                    backend: ir::WeightedBackend {
                        weight: 1,
                        backend: res.backend,
                        filters: vec![],
                    },
                    numerator,
                    denominator,
                })
            }),
            "CORS" => f.cors.as_ref().map(|c| {
                ir::HttpFilter::Cors(ir::Cors {
                    allow_origins: c.allow_origins.clone(),
                    allow_credentials: c.allow_credentials.unwrap_or(false),
                    allow_methods: c.allow_methods.clone(),
                    allow_headers: c.allow_headers.clone(),
                    expose_headers: c.expose_headers.clone(),
                    max_age: c.max_age,
                })
            }),
            "ExtensionRef" => {
                let r = f.extension_ref.clone().unwrap_or_default();
                let msg = format!(
                    "ExtensionRef filter {}/{} {:?} is not known to portcullis; matching requests get 500",
                    r.group.unwrap_or_default(),
                    r.kind.unwrap_or_default(),
                    r.name
                );
                issues
                    .unresolved
                    .get_or_insert(Problem::new(Reason::InvalidKind, msg.clone()));
                Some(ir::HttpFilter::Invalid { reason: msg })
            }
            other => {
                let msg =
                    format!("filter type {other} is not supported; matching requests get 500");
                issues
                    .invalid
                    .get_or_insert(Problem::new(Reason::UnsupportedValue, msg.clone()));
                Some(ir::HttpFilter::Invalid { reason: msg })
            }
        };
        out.push(filter.unwrap_or_else(|| {
            issues.invalid.get_or_insert(Problem::new(
                Reason::UnsupportedValue,
                format!("filter {} has no configuration", f.type_),
            ));
            ir::HttpFilter::Invalid {
                reason: format!("filter {} has no configuration", f.type_),
            }
        }));
    }
    out
}

/// Resolve a rule's filters and backendRefs, recording problems on the route.
///
/// `Err` when a value could put unsafe bytes on the wire ([`crate::wire`]):
/// the caller drops the rule with that problem.
pub(super) fn resolve_action(
    ctx: &Ctx<'_>,
    route_kind: &str,
    ns: &str,
    filter_specs: &[FilterSpec],
    refs: &[BackendRefSpec],
    out: &mut Built,
) -> Result<(Vec<ir::HttpFilter>, Vec<ir::WeightedBackend>), Problem> {
    let mut issues = FilterIssues::default();
    let filters = filters(ctx, route_kind, ns, filter_specs, &mut issues);
    let backends = backend_refs(ctx, route_kind, ns, refs, &mut issues);
    if let Some(p) = issues.unsafe_value {
        return Err(p);
    }
    if let Some(p) = issues.unresolved {
        out.unresolved.get_or_insert(p);
    }
    if let Some(p) = issues.invalid {
        out.invalid.get_or_insert(p);
    }
    Ok((filters, backends))
}

/// Resolve a rule's backendRefs.
pub(super) fn backend_refs(
    ctx: &Ctx<'_>,
    route_kind: &str,
    ns: &str,
    refs: &[BackendRefSpec],
    issues: &mut FilterIssues,
) -> Vec<ir::WeightedBackend> {
    refs.iter()
        .map(|r| {
            let res = backends::service(ctx.input, ctx.grants, route_kind, ns, r);
            if let Some(p) = res.problem {
                issues.unresolved.get_or_insert(p);
            }
            let filters = filters(ctx, route_kind, ns, &r.filters, issues);
            ir::WeightedBackend {
                weight: r.weight.unwrap_or(1).max(0) as u32,
                backend: res.backend,
                filters,
            }
        })
        .collect()
}

pub(super) fn value_match(nv: &NameValue, lower_name: bool) -> Result<ir::ValueMatch, Problem> {
    let name = if lower_name {
        nv.name.to_ascii_lowercase()
    } else {
        nv.name.clone()
    };
    let value = match nv.type_.as_deref().unwrap_or("Exact") {
        "RegularExpression" => {
            regex::Regex::new(&nv.value).map_err(|e| {
                Problem::new(
                    Reason::UnsupportedValue,
                    format!(
                        "invalid regular expression {:?}: {}",
                        nv.value,
                        one_line(&e)
                    ),
                )
            })?;
            ir::StringMatch::Regex(nv.value.clone())
        }
        _ => ir::StringMatch::Exact(nv.value.clone()),
    };
    Ok(ir::ValueMatch { name, value })
}

fn path_match(p: Option<&PathSpec>) -> Result<ir::PathMatch, Problem> {
    let Some(p) = p else {
        return Ok(ir::PathMatch::default());
    };
    let v = p.value.clone().unwrap_or_else(|| "/".into());
    Ok(match p.type_.as_deref().unwrap_or("PathPrefix") {
        "Exact" => ir::PathMatch::Exact(v),
        "RegularExpression" => {
            regex::Regex::new(&v).map_err(|e| {
                Problem::new(
                    Reason::UnsupportedValue,
                    format!("invalid path regular expression {v:?}: {}", one_line(&e)),
                )
            })?;
            ir::PathMatch::Regex(v)
        }
        _ => {
            let trimmed = v.trim_end_matches('/');
            ir::PathMatch::Prefix(if trimmed.is_empty() {
                "/".into()
            } else {
                trimmed.to_string()
            })
        }
    })
}

fn matches(m: &HttpMatchSpec) -> Result<ir::HttpMatch, Problem> {
    Ok(ir::HttpMatch {
        path: path_match(m.path.as_ref())?,
        method: m.method.clone(),
        headers: m
            .headers
            .iter()
            .map(|h| value_match(h, true))
            .collect::<Result<_, _>>()?,
        query_params: m
            .query_params
            .iter()
            .map(|q| value_match(q, false))
            .collect::<Result<_, _>>()?,
        grpc: false,
    })
}

/// Build the IR rules of an HTTPRoute.
pub(super) fn build(
    ctx: &Ctx<'_>,
    ns: &str,
    rules: &[HttpRule],
    meta: &dyn Fn(usize, Option<String>) -> ir::RouteMeta,
) -> Built {
    let mut out = Built::default();
    let mut valid_rules = 0;
    for (i, rule) in rules.iter().enumerate() {
        let ms: Result<Vec<ir::HttpMatch>, Problem> = if rule.matches.is_empty() {
            Ok(vec![ir::HttpMatch::default()])
        } else {
            rule.matches.iter().map(matches).collect()
        };
        let ms = match ms {
            Ok(ms) => ms,
            Err(p) => {
                out.invalid.get_or_insert(Problem::new(
                    p.reason,
                    format!("rule {i} dropped: {}", p.message),
                ));
                continue;
            }
        };
        if let Some(name) = rule
            .session_persistence
            .as_ref()
            .and_then(|s| s.session_name.as_deref())
            && let Err(e) = wire::token("sessionPersistence.sessionName", name)
        {
            out.invalid.get_or_insert(Problem::new(
                Reason::UnsupportedValue,
                format!("rule {i} dropped: {e}"),
            ));
            continue;
        }
        let (filters, backends) = match resolve_action(
            ctx,
            "HTTPRoute",
            ns,
            &rule.filters,
            &rule.backend_refs,
            &mut out,
        ) {
            Ok(a) => a,
            Err(p) => {
                out.invalid.get_or_insert(Problem::new(
                    p.reason,
                    format!("rule {i} dropped: {}", p.message),
                ));
                continue;
            }
        };
        let t = rule.timeouts.clone().unwrap_or_default();
        let action = ir::HttpAction {
            filters,
            backends,
            request_timeout_ms: t
                .request
                .as_deref()
                .and_then(duration_ms)
                .filter(|ms| *ms > 0),
            backend_request_timeout_ms: t
                .backend_request
                .as_deref()
                .and_then(duration_ms)
                .filter(|ms| *ms > 0),
            retry: rule.retry.as_ref().map(|r| ir::Retry {
                codes: r.codes.clone(),
                attempts: r.attempts.unwrap_or(1),
                backoff_ms: r.backoff.as_deref().and_then(duration_ms),
                ..ir::Retry::default()
            }),
            session_persistence: rule.session_persistence.as_ref().map(|s| {
                let cookie = s.type_.as_deref().unwrap_or("Cookie") == "Cookie";
                ir::SessionPersistence {
                    name: s.session_name.clone().unwrap_or_else(|| {
                        if cookie {
                            "portcullis-session".into()
                        } else {
                            "x-portcullis-session".into()
                        }
                    }),
                    cookie,
                    absolute_timeout_s: s
                        .absolute_timeout
                        .as_deref()
                        .and_then(duration_ms)
                        .map(|ms| ms / 1000),
                    permanent: s.lifetime_type.as_deref() == Some("Permanent"),
                }
            }),
            security: None,
            rate_limit: None,
            backend_traffic: None,
        };
        valid_rules += 1;
        for (mi, m) in ms.into_iter().enumerate() {
            out.http.push(ir::HttpRouteRule {
                meta: meta(i, rule.name.clone()),
                hostnames: vec![],
                matches: m,
                match_index: mi,
                action: action.clone(),
            });
        }
    }
    out.all_invalid = valid_rules == 0 && !rules.is_empty();
    out
}

/// A (regex parser's) multi-line error on one line, as a condition message.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
