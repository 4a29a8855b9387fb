//! `portcullis explain` and the admin API's `/explain`: what the gateway
//! would do with one request, and why.
//!
//! It runs on the IR that translation produced and on the data plane's own
//! choosers, so it cannot drift from what is served: the socket by port,
//! the 421 rule ([`portcullis_dataplane::table::misdirected`]), the listener
//! ([`portcullis_dataplane::table::ListenerIndex`]), the rule
//! ([`portcullis_route::RouteTable::lookup`] over the listener's IR rules, as
//! the data plane's table builds it), redirect `Location`s
//! ([`portcullis_dataplane::filters::redirect::RedirectFilter`]) and
//! `ReplacePrefixMatch` rewrites. The steps follow the request handler's
//! order: host and path checks (400), 421, listener (404), route (404),
//! SecurityPolicy (500 when invalid), rule filters (500 for an invalid one,
//! 3xx for a redirect), backend choice (500 when none or invalid, 503
//! without endpoints), then backendRef filters and forwarding.

mod rank;
mod remote;
pub mod request;
pub mod text;
mod words;

use portcullis_dataplane::filters::redirect::{RedirectFilter, RedirectInput};
use portcullis_dataplane::filters::rewrite::replace_prefix;
use portcullis_dataplane::table::{ListenerIndex, misdirected};
use portcullis_ir::{
    Backend, Config, HttpFilter, PathModifier, Port, PortProtocol, WeightedBackend,
};
use portcullis_route::{RouteTable, canonical_path, parse_authority};
use serde::Serialize;
use words::{backend_name, filter_words, rule_view, security_view, unmatched};

pub use request::Request;

/// What the gateway would do with a request.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The request, as routed (canonical path, host without port).
    pub request: RequestView,
    /// The socket chosen, if any.
    pub port: Option<PortView>,
    /// Every listener of that socket, with whether it matches the host.
    pub listeners: Vec<ListenerView>,
    /// The listener chosen, `namespace/gateway/listener`.
    pub listener: Option<String>,
    /// Why that listener (or why none).
    pub listener_reason: Option<String>,
    /// The winning rule.
    pub route: Option<RuleView>,
    /// Rules that matched too but lost, each with the criterion that decided.
    pub lost: Vec<LostRule>,
    /// Rules of the listener whose host and path match but whose other
    /// conditions (method, headers, query) do not, with the first that fails.
    pub near_misses: Vec<LostRule>,
    /// The SecurityPolicy that applies to the rule.
    pub security: Option<SecurityView>,
    /// The rule's filters, in order.
    pub filters: Vec<String>,
    /// The rule's backends, with weights and what each would answer.
    pub backends: Vec<BackendView>,
    /// The answer.
    pub answer: Answer,
}

/// The request as routed.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    /// Method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host without port, lower case.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// TLS SNI.
    pub sni: Option<String>,
    /// Canonical path (what is matched and forwarded).
    pub path: String,
    /// Query.
    pub query: Option<String>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// A bound socket.
#[derive(Clone, Debug, Serialize)]
pub struct PortView {
    /// Address and port.
    pub bind: String,
    /// `Http`, `Https`, `Tls`, `Tcp`, `Udp`.
    pub protocol: String,
    /// Why this one.
    pub reason: String,
}

/// A listener of the chosen socket.
#[derive(Clone, Debug, Serialize)]
pub struct ListenerView {
    /// `namespace/gateway/listener`.
    pub name: String,
    /// Its hostname (`None`: any).
    pub hostname: Option<String>,
    /// Whether its hostname matches the request host.
    pub matches_host: bool,
    /// Whether it was chosen.
    pub chosen: bool,
}

/// One match of one rule.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleView {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    /// `namespace/name`.
    pub route: String,
    /// The rule's name, else its index.
    pub rule: String,
    /// Index of the match within the rule.
    pub match_index: usize,
    /// The match in words: `PathPrefix /cart, header x-env = canary`.
    pub matches: String,
    /// The rule's hostnames on this listener (empty: any).
    pub hostnames: Vec<String>,
    /// The route's creation timestamp.
    pub created: String,
}

/// A rule that matched but lost.
#[derive(Clone, Debug, Serialize)]
pub struct LostRule {
    /// The rule.
    pub rule: RuleView,
    /// Why the winner won, in the spec's precedence words.
    pub reason: String,
}

/// The SecurityPolicy of a rule.
#[derive(Clone, Debug, Serialize)]
pub struct SecurityView {
    /// `namespace/name`.
    pub policy: String,
    /// Why it could not be resolved (every request answered 500).
    pub invalid: Option<String>,
    /// What it checks, in order: `CORS`, `JWT (providers a, b)`, ...
    pub checks: Vec<String>,
}

/// A backend of the rule.
#[derive(Clone, Debug, Serialize)]
pub struct BackendView {
    /// `namespace/name:port`, or `invalid`.
    pub name: String,
    /// Weight.
    pub weight: u32,
    /// Share of requests, percent (weights above 0).
    pub percent: f64,
    /// Endpoints `ip:port`.
    pub endpoints: Vec<String>,
    /// backendRef-level filters.
    pub filters: Vec<String>,
    /// What a request sent to it gets.
    pub answer: Answer,
}

/// The answer, as the gateway would give it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Answer {
    /// The status the gateway answers itself; `None` when the request is
    /// forwarded (the upstream answers) or never gets an HTTP answer.
    pub status: Option<u16>,
    /// The access log's response flag (`NR`, `MR`, `IB`, `IF`, `UH`, `BR`).
    pub flag: Option<String>,
    /// Whether the request is forwarded to a backend.
    pub forwarded: bool,
    /// The backend, when forwarded (or when only one can be chosen).
    pub backend: Option<String>,
    /// The redirect's `Location`.
    pub location: Option<String>,
    /// Host and path sent upstream, when a rewrite changes them.
    pub upstream: Option<String>,
    /// What happens, in words.
    pub reason: String,
}

impl Answer {
    fn gateway(status: u16, flag: &str, reason: impl Into<String>) -> Self {
        Answer {
            status: Some(status),
            flag: Some(flag.into()),
            forwarded: false,
            backend: None,
            location: None,
            upstream: None,
            reason: reason.into(),
        }
    }

    fn none(reason: impl Into<String>) -> Self {
        Answer {
            status: None,
            flag: None,
            forwarded: false,
            backend: None,
            location: None,
            upstream: None,
            reason: reason.into(),
        }
    }
}

/// Explain `req` against `config`; with `gateway` (`namespace/name`), only
/// sockets serving a listener of that Gateway are considered.
pub fn explain(config: &Config, req: &Request, gateway: Option<&str>) -> Explanation {
    let host = parse_authority(&req.authority).map(|h| h.into_owned());
    let mut ex = Explanation {
        request: RequestView {
            method: req.method.clone(),
            scheme: req.scheme.clone(),
            host: host.clone().unwrap_or_else(|_| req.authority.clone()),
            port: req.port,
            sni: req.sni.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
        },
        port: None,
        listeners: vec![],
        listener: None,
        listener_reason: None,
        route: None,
        lost: vec![],
        near_misses: vec![],
        security: None,
        filters: vec![],
        backends: vec![],
        answer: Answer::none(""),
    };
    let Ok(host) = host else {
        ex.answer = Answer::gateway(400, "BR", "the host is not a valid uri-host[:port]");
        return ex;
    };
    let path = match canonical_path(&req.path) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            ex.answer = Answer::gateway(400, "BR", format!("bad path: {e}"));
            return ex;
        }
    };
    ex.request.path = path.clone();

    let Some(port) = choose_port(config, req, gateway, &mut ex) else {
        return ex;
    };
    let sni = if port.protocol == PortProtocol::Http {
        None
    } else {
        req.sni.as_deref()
    };
    let index = ListenerIndex::new(&port.listeners);
    let chosen = index.find(&host);
    ex.listeners = port
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| ListenerView {
            name: l.name.clone(),
            hostname: l.hostname.clone(),
            matches_host: l
                .hostname
                .as_deref()
                .is_none_or(|h| portcullis_route::hostname_matches(h, &host)),
            chosen: chosen == Some(i),
        })
        .collect();
    if misdirected(&port.listeners, sni, &host) {
        let by_sni = index.find(sni.unwrap_or_default());
        ex.listener_reason = Some(format!(
            "the TLS SNI {:?} selected listener {}, but host {host:?} belongs to listener {}",
            sni.unwrap_or_default(),
            by_sni.map_or("(none)", |i| port.listeners[i].name.as_str()),
            chosen.map_or("(none)", |i| port.listeners[i].name.as_str()),
        ));
        ex.answer = Answer::gateway(
            421,
            "MR",
            "misdirected request: the host belongs to another listener than the TLS SNI (open a new connection with the right SNI)",
        );
        return ex;
    }
    let Some(li) = chosen else {
        ex.listener_reason = Some(format!(
            "no listener hostname on {} matches host {host:?}",
            port.bind
        ));
        ex.answer = Answer::gateway(404, "NR", "no listener matches the host");
        return ex;
    };
    let listener = &port.listeners[li];
    ex.listener = Some(listener.name.clone());
    ex.listener_reason = Some(listener_reason(listener.hostname.as_deref(), &host));

    let table = RouteTable::build(listener.http_routes.iter().cloned().map(|r| (r, ())));
    let query = req.query.as_deref();
    let winner = table.lookup(&host, &req.method, &path, &req.headers, query);
    let mut matching: Vec<(rank::HostRank, &portcullis_route::CompiledRule)> = vec![];
    for c in table.rules() {
        let Some(hr) = rank::host_rank(&c.rule().hostnames, &host) else {
            continue;
        };
        if c.matches(&req.method, &path, &req.headers, query) {
            matching.push((hr, c));
        } else if c.path().matches(&path) {
            ex.near_misses.push(LostRule {
                rule: rule_view(c.rule()),
                reason: unmatched(c.rule(), req),
            });
        }
    }
    matching.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| b.1.precedence().cmp(a.1.precedence()))
    });
    let Some(winner) = winner else {
        ex.answer = Answer::gateway(
            404,
            "NR",
            format!("no rule of listener {} matches", listener.name),
        );
        return ex;
    };
    let w = winner.rule();
    ex.route = Some(rule_view(w));
    for (hr, c) in &matching {
        if std::ptr::eq(*c, winner) {
            continue;
        }
        let whr = rank::host_rank(&w.hostnames, &host).unwrap_or(rank::HostRank::Any);
        ex.lost.push(LostRule {
            rule: rule_view(c.rule()),
            reason: rank::why(&whr, winner.precedence(), hr, c.precedence()),
        });
    }
    debug_assert!(
        matching
            .first()
            .is_some_and(|(_, c)| std::ptr::eq(*c, winner)),
        "explain's ordering agrees with the route table"
    );
    let action = &w.action;
    let input = RedirectInput {
        scheme: if port.protocol == PortProtocol::Http {
            "http"
        } else {
            "https"
        },
        host: &host,
        listener_port: port.bind.port(),
        path: &path,
        query,
        matched_prefix: winner.matched_prefix(),
    };
    if let Some(sec) = &action.security {
        ex.security = Some(security_view(sec));
        if let Some(why) = &sec.invalid {
            ex.answer = Answer::gateway(
                500,
                "IF",
                format!(
                    "SecurityPolicy {} is invalid, so the rule fails closed: {why}",
                    sec.policy
                ),
            );
            return ex;
        }
    }
    ex.filters = action.filters.iter().map(filter_words).collect();
    let mut state = Upstream {
        host: host.clone(),
        authority: req.authority.clone(),
        path: path.clone(),
        rewritten: false,
    };
    if let Some(a) = run_filters(&action.filters, &input, &mut state) {
        ex.answer = a;
        return ex;
    }
    let total: u64 = action.backends.iter().map(|b| u64::from(b.weight)).sum();
    ex.backends = action
        .backends
        .iter()
        .map(|b| backend_view(b, total, &input, &state))
        .collect();
    let live: Vec<&BackendView> = ex.backends.iter().filter(|b| b.weight > 0).collect();
    ex.answer = match live.as_slice() {
        [] if action.backends.is_empty() => {
            Answer::gateway(500, "IB", "the rule has no backends (and no redirect)")
        }
        [] => Answer::gateway(
            500,
            "IB",
            "every backend has weight 0, so none can be chosen",
        ),
        [one] => one.answer.clone(),
        many if many.iter().all(|b| b.answer == many[0].answer) => many[0].answer.clone(),
        many if many.iter().all(|b| b.answer.forwarded) => Answer {
            forwarded: true,
            upstream: many[0].answer.upstream.clone(),
            ..Answer::none(format!(
                "forwarded by weight to {}; the upstream answers",
                many.iter()
                    .map(|b| format!("{} ({}%)", b.name, b.percent))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        },
        many => Answer::none(format!(
            "depends on the weighted choice between {} backends (see each backend's answer)",
            many.len()
        )),
    };
    ex
}

/// The request's host and path as they go upstream.
#[derive(Clone)]
struct Upstream {
    host: String,
    authority: String,
    path: String,
    rewritten: bool,
}

fn choose_port<'a>(
    config: &'a Config,
    req: &Request,
    gateway: Option<&str>,
    ex: &mut Explanation,
) -> Option<&'a Port> {
    let of_gateway = |p: &Port| {
        gateway.is_none_or(|g| {
            p.listeners
                .iter()
                .any(|l| l.name.strip_prefix(g).is_some_and(|r| r.starts_with('/')))
        })
    };
    let candidates: Vec<&Port> = config
        .ports
        .iter()
        .filter(|p| p.bind.port() == req.port && of_gateway(p))
        .collect();
    let Some(port) = candidates.first().copied() else {
        let scope = gateway.map_or(String::new(), |g| format!(" of Gateway {g}"));
        ex.answer = Answer::none(format!(
            "no listener{scope} is on port {}: the connection is refused",
            req.port
        ));
        return None;
    };
    let mut reason = format!("the only socket on port {}", req.port);
    if candidates.len() > 1 {
        reason = format!(
            "the first of {} sockets on port {} ({}); give --gateway to pick another",
            candidates.len(),
            req.port,
            candidates
                .iter()
                .map(|p| p.bind.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    ex.port = Some(PortView {
        bind: port.bind.to_string(),
        protocol: format!("{:?}", port.protocol),
        reason,
    });
    let tls = matches!(port.protocol, PortProtocol::Https | PortProtocol::Tls);
    let refused = match (port.protocol, req.scheme.as_str()) {
        (PortProtocol::Tcp | PortProtocol::Udp, _) => Some("a layer-4 port: no HTTP routing"),
        (_, "https") if !tls => Some("a plain-HTTP port: the TLS handshake fails"),
        (_, "http") if tls => Some("a TLS port: a plain-HTTP request gets no HTTP answer"),
        _ => None,
    };
    if let Some(why) = refused {
        ex.answer = Answer::none(format!("port {} is {why}", req.port));
        return None;
    }
    Some(port)
}

fn listener_reason(hostname: Option<&str>, host: &str) -> String {
    match hostname.map(portcullis_route::host::classify) {
        None | Some(portcullis_route::host::HostPattern::Any) => format!(
            "no listener hostname matches {host:?} more specifically; this one has no hostname (any host)"
        ),
        Some(portcullis_route::host::HostPattern::Exact(_)) => {
            format!("its hostname equals the host {host:?} (an exact hostname wins)")
        }
        Some(portcullis_route::host::HostPattern::Wildcard(s)) => format!(
            "its hostname *.{s} is the most specific matching one (no exact hostname matches {host:?})"
        ),
    }
}

/// Run filters as the data plane does, up to an answer of the gateway's own.
fn run_filters(
    filters: &[HttpFilter],
    input: &RedirectInput<'_>,
    up: &mut Upstream,
) -> Option<Answer> {
    for f in filters {
        match f {
            HttpFilter::Invalid { reason } => {
                return Some(Answer::gateway(
                    500,
                    "IF",
                    format!("invalid filter: {reason}"),
                ));
            }
            HttpFilter::RequestRedirect(r) => {
                return Some(match RedirectFilter::new(r) {
                    Ok(rf) => {
                        let i = RedirectInput {
                            host: &up.host,
                            path: &up.path,
                            ..*input
                        };
                        let location = rf.location(&i);
                        Answer {
                            status: Some(r.status_code),
                            flag: None,
                            forwarded: false,
                            backend: None,
                            reason: format!("redirect ({}) to {location}", r.status_code),
                            location: Some(location),
                            upstream: None,
                        }
                    }
                    Err(e) => Answer::gateway(500, "IF", format!("invalid filter: {e}")),
                });
            }
            HttpFilter::UrlRewrite(u) => {
                up.rewritten = true;
                if let Some(h) = &u.hostname {
                    up.authority = h.clone();
                }
                match &u.path {
                    Some(PathModifier::ReplaceFullPath(p)) => up.path.clone_from(p),
                    Some(PathModifier::ReplacePrefixMatch(r)) => {
                        if let Some(prefix) = input.matched_prefix {
                            up.path = replace_prefix(&up.path, prefix, r);
                        }
                    }
                    None => {}
                }
            }
            _ => {}
        }
    }
    None
}

fn backend_view(
    b: &WeightedBackend,
    total: u64,
    input: &RedirectInput<'_>,
    up: &Upstream,
) -> BackendView {
    let percent = if total == 0 {
        0.0
    } else {
        (f64::from(b.weight) * 1000.0 / total as f64).round() / 10.0
    };
    let mut up = up.clone();
    let name = backend_name(&b.backend);
    let answer = match run_filters(&b.filters, input, &mut up) {
        Some(a) => a,
        None => match &b.backend {
            Backend::Invalid { reason } => {
                Answer::gateway(500, "IB", format!("invalid backend: {reason}"))
            }
            Backend::Service(s) if s.endpoints.is_empty() => Answer {
                backend: Some(name.clone()),
                ..Answer::gateway(503, "UH", format!("backend {name} has no ready endpoint"))
            },
            Backend::Service(_) => Answer {
                status: None,
                flag: None,
                forwarded: true,
                backend: Some(name.clone()),
                location: None,
                upstream: up
                    .rewritten
                    .then(|| format!("{} {}", up.authority, up.path)),
                reason: format!("forwarded to {name}; the upstream answers"),
            },
        },
    };
    BackendView {
        endpoints: match &b.backend {
            Backend::Service(s) => s.endpoints.iter().map(|e| e.addr.to_string()).collect(),
            Backend::Invalid { .. } => vec![],
        },
        name,
        weight: b.weight,
        percent,
        filters: b.filters.iter().map(filter_words).collect(),
        answer,
    }
}

/// Translate the files under `config` as `run` would.
pub fn load(
    config: &std::path::Path,
    fields: portcullis_source::FieldValidation,
    options: &portcullis_translate::Options,
    serve: &portcullis_source::ingress::ServeOptions,
) -> (Config, Vec<String>) {
    let mut source = portcullis_source::FileSource::new(config).with_field_validation(fields);
    let reload = source.reload();
    let errors = reload.errors.iter().map(|e| e.to_string()).collect();
    let derived = portcullis_source::ingress::derive(&reload.snapshot, serve);
    let out = portcullis_translate::translate(&portcullis_translate::Input {
        snapshot: &derived.snapshot,
        options,
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    });
    (out.config, errors)
}

/// `portcullis explain`.
pub fn run(args: &crate::cli::ExplainArgs) -> anyhow::Result<std::process::ExitCode> {
    let req = Request::parse(&args.request, &args.headers)?;
    if let Some(admin) = &args.admin {
        let token = args
            .admin_token_file
            .as_deref()
            .map(crate::admin::read_token)
            .transpose()?;
        let json = args.output == crate::cli::ValidateFormat::Json;
        print!("{}", remote::ask(admin, token.as_deref(), args, json)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let Some(config) = &args.config else {
        anyhow::bail!("give --config DIR or --admin URL");
    };
    let options = portcullis_translate::Options {
        address_pool: args.address_pool,
        bind_address: args.bind_address,
        ..Default::default()
    };
    let (config, errors) = load(
        config,
        args.field_validation,
        &options,
        &args.ingress.options()?,
    );
    for e in &errors {
        eprintln!("warning: {e} (not served)");
    }
    let ex = explain(&config, &req, args.gateway.as_deref());
    match args.output {
        crate::cli::ValidateFormat::Text => print!("{}", text::render(&ex)),
        crate::cli::ValidateFormat::Json => println!("{}", serde_json::to_string_pretty(&ex)?),
    }
    Ok(std::process::ExitCode::SUCCESS)
}
