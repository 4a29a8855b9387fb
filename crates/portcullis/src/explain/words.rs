//! Rules, matches, filters and policies in words, for `portcullis explain`.

use portcullis_ir::{Backend, HttpFilter, HttpRouteRule, PathMatch, PathModifier, StringMatch};

use super::{Request, RuleView, SecurityView};

pub(super) fn rule_view(r: &HttpRouteRule) -> RuleView {
    RuleView {
        kind: r.meta.kind.clone(),
        route: format!("{}/{}", r.meta.namespace, r.meta.name),
        rule: r
            .meta
            .rule_name
            .clone()
            .unwrap_or_else(|| r.meta.rule_index.to_string()),
        match_index: r.match_index,
        matches: match_words(r),
        hostnames: r.hostnames.clone(),
        created: r.meta.creation_timestamp.clone(),
    }
}

/// The first non-path condition of `r` that `req` fails, in words; with
/// the matchers the route table compiles (`portcullis_route::matchers`).
pub(super) fn unmatched(r: &HttpRouteRule, req: &Request) -> String {
    use portcullis_route::{HeaderMatcher, QueryMatcher, ValueMatcher};
    let m = &r.matches;
    if let Some(method) = m.method.as_deref().filter(|x| *x != req.method) {
        return format!("method {} is not {method}", req.method);
    }
    let value = |v: &StringMatch| match v {
        StringMatch::Exact(e) => Some(ValueMatcher::Exact(e.as_str().into())),
        StringMatch::Regex(r) => portcullis_route::path::anchored(r)
            .ok()
            .map(ValueMatcher::Regex),
    };
    for h in &m.headers {
        let ok = http::HeaderName::from_bytes(h.name.as_bytes())
            .ok()
            .zip(value(&h.value))
            .is_some_and(|(name, value)| HeaderMatcher { name, value }.matches(&req.headers));
        if !ok {
            return match req.headers.iter().find(|(n, _)| *n == h.name) {
                Some((_, v)) => format!(
                    "header {} is {v:?}, the rule wants {}",
                    h.name,
                    value_words(&h.value)
                ),
                None => format!(
                    "no header {} (the rule wants {})",
                    h.name,
                    value_words(&h.value)
                ),
            };
        }
    }
    for q in &m.query_params {
        let ok = value(&q.value).is_some_and(|value| {
            QueryMatcher {
                name: q.name.as_str().into(),
                value,
            }
            .matches(req.query.as_deref())
        });
        if !ok {
            return format!(
                "query parameter {} does not match (the rule wants {})",
                q.name,
                value_words(&q.value)
            );
        }
    }
    "the rule's conditions do not all hold".into()
}

pub(super) fn value_words(v: &StringMatch) -> String {
    match v {
        StringMatch::Exact(e) => format!("= {e}"),
        StringMatch::Regex(r) => format!("~ /{r}/"),
    }
}

pub(super) fn match_words(r: &HttpRouteRule) -> String {
    let m = &r.matches;
    let mut parts = vec![match &m.path {
        PathMatch::Exact(p) => format!("Exact {p}"),
        PathMatch::Prefix(p) => format!("PathPrefix {p}"),
        PathMatch::Regex(p) => format!("RegularExpression {p}"),
    }];
    if let Some(method) = &m.method {
        parts.push(format!("method {method}"));
    }
    for h in &m.headers {
        parts.push(format!("header {} {}", h.name, value_words(&h.value)));
    }
    for q in &m.query_params {
        parts.push(format!("query {} {}", q.name, value_words(&q.value)));
    }
    parts.join(", ")
}

pub(super) fn security_view(s: &portcullis_ir::Security) -> SecurityView {
    let mut checks = vec![];
    if s.cors.is_some() {
        checks.push("CORS (preflights answered by the gateway)".to_string());
    }
    if let Some(o) = &s.oidc {
        checks.push(format!("OIDC login (issuer {})", o.issuer));
    }
    if let Some(j) = &s.jwt {
        let names: Vec<&str> = j.providers.iter().map(|p| p.name.as_str()).collect();
        checks.push(format!(
            "JWT{} (providers {})",
            if j.optional { ", optional" } else { "" },
            names.join(", ")
        ));
    }
    if s.api_key.is_some() {
        checks.push("API key".into());
    }
    if s.basic.is_some() {
        checks.push("Basic".into());
    }
    if let Some(e) = &s.ext_auth {
        checks.push(if e.grpc {
            "external authorization (gRPC)".into()
        } else {
            "external authorization".into()
        });
    }
    if s.authorization.is_some() {
        checks.push("authorization rules".into());
    }
    SecurityView {
        policy: s.policy.clone(),
        invalid: s.invalid.clone(),
        checks,
    }
}

pub(super) fn filter_words(f: &HttpFilter) -> String {
    match f {
        HttpFilter::RequestHeaderModifier(m) => format!(
            "RequestHeaderModifier (set {}, add {}, remove {})",
            m.set.len(),
            m.add.len(),
            m.remove.len()
        ),
        HttpFilter::ResponseHeaderModifier(m) => format!(
            "ResponseHeaderModifier (set {}, add {}, remove {})",
            m.set.len(),
            m.add.len(),
            m.remove.len()
        ),
        HttpFilter::RequestRedirect(r) => format!("RequestRedirect ({})", r.status_code),
        HttpFilter::UrlRewrite(u) => format!(
            "URLRewrite{}{}",
            u.hostname
                .as_deref()
                .map_or(String::new(), |h| format!(" hostname {h}")),
            match &u.path {
                Some(PathModifier::ReplaceFullPath(p)) => format!(" ReplaceFullPath {p}"),
                Some(PathModifier::ReplacePrefixMatch(p)) => format!(" ReplacePrefixMatch {p}"),
                None => String::new(),
            }
        ),
        HttpFilter::RequestMirror(m) => format!(
            "RequestMirror to {} ({}/{})",
            backend_name(&m.backend.backend),
            m.numerator,
            m.denominator
        ),
        HttpFilter::Cors(_) => "CORS".into(),
        HttpFilter::Invalid { reason } => format!("invalid filter: {reason}"),
    }
}

pub(super) fn backend_name(b: &Backend) -> String {
    match b {
        Backend::Service(s) => s.name.clone(),
        Backend::Invalid { .. } => "invalid".into(),
    }
}
