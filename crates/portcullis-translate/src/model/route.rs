//! Views of routes of every kind: parentRefs, hostnames and typed rules.
//!
//! HTTPRoute and GRPCRoute filters (on rules and on backendRefs: four
//! generated copies) are one [`FilterSpec`]; TLSRoute, TCPRoute and UDPRoute
//! rules are one [`L4Rule`].

use portcullis_store::types as t;

use super::{BackendRefSpec, ObjectRef, ParentRefSpec, backend_ref, parent_ref, variant};

/// A route's rules, typed by route kind.
#[derive(Clone, Debug)]
pub(crate) enum Rules {
    Http(Vec<HttpRule>),
    Grpc(Vec<GrpcRule>),
    /// TLSRoute, TCPRoute, UDPRoute.
    L4(Vec<L4Rule>),
}

impl Rules {
    /// `spec.rules[].name` of every named rule, in order.
    pub fn names(&self) -> Vec<String> {
        fn named<'a>(it: impl Iterator<Item = &'a Option<String>>) -> Vec<String> {
            it.flatten().cloned().collect()
        }
        match self {
            Rules::Http(r) => named(r.iter().map(|r| &r.name)),
            Rules::Grpc(r) => named(r.iter().map(|r| &r.name)),
            Rules::L4(r) => named(r.iter().map(|r| &r.name)),
        }
    }
}

/// An HTTPRoute rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpRule {
    pub name: Option<String>,
    pub matches: Vec<HttpMatchSpec>,
    pub filters: Vec<FilterSpec>,
    pub backend_refs: Vec<BackendRefSpec>,
    pub timeouts: Option<Timeouts>,
    pub retry: Option<RetrySpec>,
    pub session_persistence: Option<SessionSpec>,
}

/// An HTTPRoute match.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpMatchSpec {
    pub path: Option<PathSpec>,
    pub headers: Vec<NameValue>,
    pub query_params: Vec<NameValue>,
    pub method: Option<String>,
}

/// `path` of an HTTPRoute match.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathSpec {
    pub type_: Option<String>,
    pub value: Option<String>,
}

/// A header or query parameter match, or a header to set or add.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameValue {
    pub type_: Option<String>,
    pub name: String,
    pub value: String,
}

/// `timeouts` of an HTTPRoute rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

/// `retry` of an HTTPRoute rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct RetrySpec {
    pub codes: Vec<u16>,
    pub attempts: Option<u32>,
    pub backoff: Option<String>,
}

/// `sessionPersistence` of an HTTPRoute rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct SessionSpec {
    pub session_name: Option<String>,
    pub absolute_timeout: Option<String>,
    pub type_: Option<String>,
    pub lifetime_type: Option<String>,
}

/// A GRPCRoute rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct GrpcRule {
    pub name: Option<String>,
    pub matches: Vec<GrpcMatchSpec>,
    pub filters: Vec<FilterSpec>,
    pub backend_refs: Vec<BackendRefSpec>,
}

/// A GRPCRoute match.
#[derive(Clone, Debug, Default)]
pub(crate) struct GrpcMatchSpec {
    pub method: Option<MethodMatch>,
    pub headers: Vec<NameValue>,
}

/// `method` of a GRPCRoute match.
#[derive(Clone, Debug, Default)]
pub(crate) struct MethodMatch {
    pub type_: Option<String>,
    pub service: Option<String>,
    pub method: Option<String>,
}

/// A TLSRoute, TCPRoute or UDPRoute rule.
#[derive(Clone, Debug, Default)]
pub(crate) struct L4Rule {
    pub name: Option<String>,
    pub backend_refs: Vec<BackendRefSpec>,
}

/// A filter (`HTTPRouteFilter` or `GRPCRouteFilter`), on a rule or a backendRef.
#[derive(Clone, Debug, Default)]
pub(crate) struct FilterSpec {
    /// `type`, as the API spells it (`URLRewrite`, `CORS`, …).
    pub type_: &'static str,
    pub request_header_modifier: Option<HeaderModSpec>,
    pub response_header_modifier: Option<HeaderModSpec>,
    pub request_redirect: Option<RedirectSpec>,
    pub url_rewrite: Option<RewriteSpec>,
    pub request_mirror: Option<MirrorSpec>,
    pub cors: Option<CorsSpec>,
    pub extension_ref: Option<ObjectRef>,
}

/// `requestHeaderModifier` / `responseHeaderModifier`.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderModSpec {
    pub set: Vec<NameValue>,
    pub add: Vec<NameValue>,
    pub remove: Vec<String>,
}

/// `path` of a redirect or rewrite.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathModSpec {
    pub type_: String,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

/// `requestRedirect`.
#[derive(Clone, Debug, Default)]
pub(crate) struct RedirectSpec {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModSpec>,
    pub port: Option<i32>,
    pub status_code: Option<u16>,
}

/// `urlRewrite`.
#[derive(Clone, Debug, Default)]
pub(crate) struct RewriteSpec {
    pub hostname: Option<String>,
    pub path: Option<PathModSpec>,
}

/// `requestMirror`.
#[derive(Clone, Debug, Default)]
pub(crate) struct MirrorSpec {
    pub backend_ref: BackendRefSpec,
    pub percent: Option<u32>,
    /// `fraction`: numerator and denominator (default 100).
    pub fraction: Option<(u32, Option<u32>)>,
}

/// `cors`.
#[derive(Clone, Debug, Default)]
pub(crate) struct CorsSpec {
    pub allow_origins: Vec<String>,
    pub allow_credentials: Option<bool>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u32>,
}

// Conversions from the generated types.

fn u32_of(v: i32) -> u32 {
    v.max(0) as u32
}

macro_rules! name_values {
    ($v:expr) => {
        $v.iter()
            .flatten()
            .map(|h| NameValue {
                type_: None,
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    };
}

macro_rules! value_matches {
    ($v:expr) => {
        $v.iter()
            .flatten()
            .map(|h| NameValue {
                type_: h.r#type.as_ref().map(|t| variant(t).to_string()),
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    };
}

macro_rules! header_mod {
    ($m:expr) => {
        $m.as_ref().map(|m| HeaderModSpec {
            set: name_values!(m.set),
            add: name_values!(m.add),
            remove: m.remove.clone().unwrap_or_default(),
        })
    };
}

macro_rules! mirror {
    ($m:expr) => {
        $m.as_ref().map(|m| MirrorSpec {
            backend_ref: backend_ref!(&m.backend_ref, None),
            percent: m.percent.map(u32_of),
            fraction: m
                .fraction
                .as_ref()
                .map(|f| (u32_of(f.numerator), f.denominator.map(u32_of))),
        })
    };
}

macro_rules! extension_ref {
    ($e:expr) => {
        $e.as_ref().map(|e| ObjectRef {
            group: Some(e.group.clone()),
            kind: Some(e.kind.clone()),
            name: e.name.clone(),
            namespace: None,
        })
    };
}

macro_rules! path_mod {
    ($p:expr) => {
        $p.as_ref().map(|p| PathModSpec {
            type_: variant(&p.r#type).to_string(),
            replace_full_path: p.replace_full_path.clone(),
            replace_prefix_match: p.replace_prefix_match.clone(),
        })
    };
}

/// An HTTPRoute filter (on a rule or a backendRef).
macro_rules! http_filter {
    ($f:expr) => {{
        let f = $f;
        FilterSpec {
            type_: variant(&f.r#type),
            request_header_modifier: header_mod!(f.request_header_modifier),
            response_header_modifier: header_mod!(f.response_header_modifier),
            request_redirect: f.request_redirect.as_ref().map(|r| RedirectSpec {
                scheme: r.scheme.as_ref().map(|s| variant(s).to_string()),
                hostname: r.hostname.clone(),
                path: path_mod!(r.path),
                port: r.port,
                status_code: r.status_code.map(|c| c.clamp(0, 999) as u16),
            }),
            url_rewrite: f.url_rewrite.as_ref().map(|r| RewriteSpec {
                hostname: r.hostname.clone(),
                path: path_mod!(r.path),
            }),
            request_mirror: mirror!(f.request_mirror),
            cors: f.cors.as_ref().map(|c| CorsSpec {
                allow_origins: c.allow_origins.clone().unwrap_or_default(),
                allow_credentials: c.allow_credentials,
                allow_methods: c.allow_methods.clone().unwrap_or_default(),
                allow_headers: c.allow_headers.clone().unwrap_or_default(),
                expose_headers: c.expose_headers.clone().unwrap_or_default(),
                max_age: c.max_age.map(u32_of),
            }),
            extension_ref: extension_ref!(f.extension_ref),
        }
    }};
}

/// A GRPCRoute filter (on a rule or a backendRef).
macro_rules! grpc_filter {
    ($f:expr) => {{
        let f = $f;
        FilterSpec {
            type_: variant(&f.r#type),
            request_header_modifier: header_mod!(f.request_header_modifier),
            response_header_modifier: header_mod!(f.response_header_modifier),
            request_mirror: mirror!(f.request_mirror),
            extension_ref: extension_ref!(f.extension_ref),
            ..FilterSpec::default()
        }
    }};
}

/// backendRefs with their filters (`$filter` converts one filter).
macro_rules! backend_refs_with_filters {
    ($v:expr, $filter:ident) => {
        $v.iter()
            .flatten()
            .map(|b| BackendRefSpec {
                filters: b.filters.iter().flatten().map(|f| $filter!(f)).collect(),
                ..backend_ref!(b, b.weight)
            })
            .collect()
    };
}

impl From<&t::HttpRouteRules> for HttpRule {
    fn from(r: &t::HttpRouteRules) -> Self {
        HttpRule {
            name: r.name.clone(),
            matches: r
                .matches
                .iter()
                .flatten()
                .map(|m| HttpMatchSpec {
                    path: m.path.as_ref().map(|p| PathSpec {
                        type_: p.r#type.as_ref().map(|t| variant(t).to_string()),
                        value: p.value.clone(),
                    }),
                    headers: value_matches!(m.headers),
                    query_params: value_matches!(m.query_params),
                    method: m.method.as_ref().map(|x| variant(x).to_string()),
                })
                .collect(),
            filters: r
                .filters
                .iter()
                .flatten()
                .map(|f| http_filter!(f))
                .collect(),
            backend_refs: backend_refs_with_filters!(r.backend_refs, http_filter),
            timeouts: r.timeouts.as_ref().map(|x| Timeouts {
                request: x.request.clone(),
                backend_request: x.backend_request.clone(),
            }),
            retry: r.retry.as_ref().map(|x| RetrySpec {
                codes: x
                    .codes
                    .iter()
                    .flatten()
                    .map(|c| (*c).clamp(0, 999) as u16)
                    .collect(),
                attempts: x.attempts.map(|a| a.clamp(0, u32::MAX as i64) as u32),
                backoff: x.backoff.clone(),
            }),
            session_persistence: r.session_persistence.as_ref().map(|s| SessionSpec {
                session_name: s.session_name.clone(),
                absolute_timeout: s.absolute_timeout.clone(),
                type_: s.r#type.as_ref().map(|x| variant(x).to_string()),
                lifetime_type: s
                    .cookie_config
                    .as_ref()
                    .and_then(|c| c.lifetime_type.as_ref())
                    .map(|x| variant(x).to_string()),
            }),
        }
    }
}

impl From<&t::GrpcRouteRules> for GrpcRule {
    fn from(r: &t::GrpcRouteRules) -> Self {
        GrpcRule {
            name: r.name.clone(),
            matches: r
                .matches
                .iter()
                .flatten()
                .map(|m| GrpcMatchSpec {
                    method: m.method.as_ref().map(|x| MethodMatch {
                        type_: x.r#type.as_ref().map(|t| variant(t).to_string()),
                        service: x.service.clone(),
                        method: x.method.clone(),
                    }),
                    headers: value_matches!(m.headers),
                })
                .collect(),
            filters: r
                .filters
                .iter()
                .flatten()
                .map(|f| grpc_filter!(f))
                .collect(),
            backend_refs: backend_refs_with_filters!(r.backend_refs, grpc_filter),
        }
    }
}

macro_rules! l4_rules {
    ($rules:expr) => {
        Rules::L4(
            $rules
                .iter()
                .map(|r| L4Rule {
                    name: r.name.clone(),
                    backend_refs: r
                        .backend_refs
                        .iter()
                        .map(|b| backend_ref!(b, b.weight))
                        .collect(),
                })
                .collect(),
        )
    };
}

/// parentRefs, in a vector of their exact length (an `Option`'s flattened
/// iterator does not tell its length, and a vector collected from it
/// reserves room for four: held per route by the memo's views).
fn parents<P>(v: &Option<Vec<P>>, f: impl Fn(&P) -> ParentRefSpec) -> Vec<ParentRefSpec> {
    v.as_deref().unwrap_or_default().iter().map(f).collect()
}

/// What attachment reads of every route on every translation: its
/// parentRefs and hostnames. The rules are read from the route object only
/// when they are built ([`Rules`]), so a long-lived view does not keep a
/// second copy of them.
#[derive(Clone, Debug)]
pub(crate) struct RouteHead {
    pub parent_refs: Vec<ParentRefSpec>,
    pub hostnames: Vec<String>,
}

/// `From` impls of [`RouteHead`] and [`Rules`] for a generated route spec
/// type.
macro_rules! route_spec {
    ($t:ty, |$s:ident| $hostnames:expr, $rules:expr) => {
        impl From<&$t> for RouteHead {
            fn from($s: &$t) -> Self {
                RouteHead {
                    parent_refs: parents(&$s.parent_refs, |p| parent_ref!(p)),
                    hostnames: $hostnames,
                }
            }
        }
        impl From<&$t> for Rules {
            fn from($s: &$t) -> Self {
                $rules
            }
        }
    };
}

route_spec!(
    t::HttpRouteSpec,
    |s| s.hostnames.clone().unwrap_or_default(),
    Rules::Http(s.rules.iter().flatten().map(HttpRule::from).collect())
);
route_spec!(
    t::GrpcRouteSpec,
    |s| s.hostnames.clone().unwrap_or_default(),
    Rules::Grpc(s.rules.iter().flatten().map(GrpcRule::from).collect())
);
route_spec!(t::TlsRouteSpec, |s| s.hostnames.clone(), l4_rules!(s.rules));
route_spec!(t::TcpRouteSpec, |s| vec![], l4_rules!(s.rules));
route_spec!(t::UdpRouteSpec, |s| vec![], l4_rules!(s.rules));
