//! Route attachment (parentRefs → listeners) and route statuses, for every route kind.
//!
//! Spec rules implemented here (Gateway API v1.6, `ParentReference`,
//! `AllowedRoutes`, `Hostname`):
//! - a parentRef selects listeners by `sectionName` and `port`; none → `NoMatchingParent`;
//! - a listener admits a route by namespace (`Same`/`All`/`Selector`) and kind; none → `NotAllowedByListeners`;
//! - HTTP, GRPC and TLS routes need a hostname intersection; none → `NoMatchingListenerHostname`;
//! - `attachedRoutes` counts accepted routes per listener;
//! - unresolvable backendRefs keep the route Accepted with `ResolvedRefs=False`.

mod grpc;
mod http;
mod l4;

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use portcullis_ir as ir;
use portcullis_store::status::{ParentRef, ParentStatus, RouteStatus, Status, Statuses};
use portcullis_store::{GATEWAY_GROUP, Kind, ObjectKey, ObjectRef};

use crate::Input;
use crate::conditions::*;
use crate::gateway::{GatewayState, ListenerState, Owner};
use crate::hostname;
use crate::memo::Memo;
use crate::model::{Meta, Obj, ParentRefSpec, RouteHead, Rules, namespace_labels};
use crate::refs::Grants;

/// Shared inputs of route translation.
pub(crate) struct Ctx<'a> {
    pub input: &'a Input<'a>,
    pub grants: &'a Grants,
}

impl<'a> Ctx<'a> {
    pub fn new(input: &'a Input<'a>, grants: &'a Grants) -> Self {
        Ctx { input, grants }
    }

    /// Labels of a namespace, including the `kubernetes.io/metadata.name` label the API server adds.
    pub fn labels(&self, ns: &str) -> BTreeMap<String, String> {
        namespace_labels(self.input.snapshot, ns)
    }
}

/// What a route's rules turn into, independent of the listener.
#[derive(Default)]
pub(crate) struct Built {
    /// The HTTP rules, hostnames left empty, as the builders make them;
    /// [`Built::seal`] moves them into the per-hostnames cache
    /// ([`Built::http_on`] fills the hostnames).
    pub http: Vec<ir::HttpRouteRule>,
    /// How many HTTP rules there are (`http` is empty once sealed).
    http_rules: usize,
    /// The HTTP rules with the hostnames of each listener they attached
    /// to, shared (`Arc`) by every translation that reuses this `Built`, so
    /// an unchanged route's IR rules are the same `Arc`s from one
    /// configuration to the next (the data plane reuses what it compiled).
    on_hosts: std::sync::Mutex<OnHosts>,
    pub l4: Option<ir::L4Route>,
    /// First unresolved reference (ResolvedRefs=False).
    pub unresolved: Option<Problem>,
    /// Rules dropped as invalid (PartiallyInvalid=True, or Accepted=False when all are).
    pub invalid: Option<Problem>,
    pub all_invalid: bool,
}

/// [`Built::on_hosts`]: the rules without hostnames until the first set of
/// hostnames takes them (moved, not copied: one copy of each rule is kept
/// for a route that attaches with one set of hostnames, the usual case),
/// then the rules per set of hostnames.
#[derive(Default)]
struct OnHosts {
    base: Vec<ir::HttpRouteRule>,
    by_hosts: Vec<(Vec<String>, HostRules)>,
}

/// A route's HTTP rules on one set of hostnames.
type HostRules = Arc<[Arc<ir::HttpRouteRule>]>;

impl Built {
    /// Done building: the HTTP rules move into the per-hostnames cache.
    fn seal(&mut self) {
        self.http_rules = self.http.len();
        let on = self.on_hosts.get_mut().unwrap_or_else(|e| e.into_inner());
        on.base = std::mem::take(&mut self.http);
    }

    /// The HTTP rules with `hosts` as their hostnames, built once per set
    /// of hostnames.
    fn http_on(&self, hosts: &[String]) -> HostRules {
        let mut cache = self.on_hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, rules)) = cache.by_hosts.iter().find(|(h, _)| h == hosts) {
            return rules.clone();
        }
        let with_hosts = |mut r: ir::HttpRouteRule| {
            r.hostnames = hosts.to_vec();
            Arc::new(r)
        };
        let rules: HostRules = match cache.by_hosts.first() {
            Some((_, first)) => first.iter().map(|r| with_hosts((**r).clone())).collect(),
            None => std::mem::take(&mut cache.base)
                .into_iter()
                .map(with_hosts)
                .collect(),
        };
        // Usually the only entry: no room for more until needed.
        cache.by_hosts.reserve_exact(1);
        cache.by_hosts.push((hosts.to_vec(), rules.clone()));
        rules
    }
}

/// A route's metadata, parentRefs and hostnames: what attachment reads of
/// every route on every translation (the memo keeps it per version of the
/// route). Its rules are read from the object when they are built.
pub(crate) struct RouteView {
    meta: Meta,
    spec: RouteHead,
}

/// A route object of any kind, as the snapshot holds it.
pub(crate) trait RouteObject {
    /// Its view.
    fn view(&self) -> RouteView;
    /// Its rules.
    fn rules(&self) -> Rules;
    /// Its metadata.
    fn meta(&self) -> &portcullis_store::types::ObjectMeta;
}

macro_rules! route_object {
    ($($t:ty),*) => {$(
        impl RouteObject for $t {
            fn view(&self) -> RouteView {
                let o = Obj::<RouteHead>::of(&self.metadata, &self.spec);
                RouteView {
                    meta: o.metadata,
                    spec: o.spec,
                }
            }
            fn rules(&self) -> Rules {
                Rules::from(&self.spec)
            }
            fn meta(&self) -> &portcullis_store::types::ObjectMeta {
                &self.metadata
            }
        }
    )*};
}

route_object!(
    portcullis_store::types::HTTPRoute,
    portcullis_store::types::GRPCRoute,
    portcullis_store::types::TLSRoute,
    portcullis_store::types::TCPRoute,
    portcullis_store::types::UDPRoute
);

/// One route of any kind, in the shape attachment needs.
struct RouteObj<'s> {
    kind: Kind,
    /// The key, borrowed from the snapshot.
    key: &'s ObjectKey,
    /// The object, borrowed from the snapshot (its rules are read when built).
    obj: &'s dyn RouteObject,
    view: Arc<RouteView>,
}

impl std::ops::Deref for RouteObj<'_> {
    type Target = RouteView;
    fn deref(&self) -> &RouteView {
        &self.view
    }
}

fn collect<'s, T: RouteObject>(
    memo: &mut Memo,
    kind: Kind,
    objs: &'s BTreeMap<ObjectKey, Arc<T>>,
) -> Vec<RouteObj<'s>> {
    objs.iter()
        .map(|(k, o)| RouteObj {
            kind,
            key: k,
            obj: &**o,
            view: memo.view(kind, k, &**o),
        })
        .collect()
}

/// Attach every route to its parents, fill listeners' rules and counts, and write route statuses.
pub(crate) fn attach_all(
    ctx: &mut Ctx<'_>,
    memo: &mut Memo,
    gws: &mut [GatewayState],
    statuses: &mut Statuses,
) {
    let s = ctx.input.snapshot;
    let mut all = collect(memo, Kind::HTTPRoute, &s.http_routes);
    all.extend(collect(memo, Kind::GRPCRoute, &s.grpc_routes));
    all.extend(collect(memo, Kind::TLSRoute, &s.tls_routes));
    all.extend(collect(memo, Kind::TCPRoute, &s.tcp_routes));
    all.extend(collect(memo, Kind::UDPRoute, &s.udp_routes));
    // Oldest first: L4 listeners serve the oldest route, and IR order is stable.
    all.sort_by(|a, b| a.meta.age_cmp(&b.meta));
    for route in all {
        if let Some(status) = attach(ctx, memo, gws, &route) {
            statuses.insert(
                ObjectRef {
                    kind: route.kind,
                    key: route.key.clone(),
                },
                Status::Route(status),
            );
        }
    }
}

fn build(ctx: &Ctx<'_>, route: &RouteObj) -> Built {
    let route_meta = |i: usize, name: Option<String>| ir::RouteMeta {
        kind: route.kind.as_str().to_string(),
        namespace: route.key.namespace.clone(),
        name: route.key.name.clone(),
        creation_timestamp: route.meta.creation_timestamp.clone().unwrap_or_default(),
        rule_index: i,
        rule_name: name,
    };
    let ns = &route.key.namespace;
    let mut built = match &route.obj.rules() {
        Rules::Http(rules) => http::build(ctx, ns, rules, &route_meta),
        Rules::Grpc(rules) => grpc::build(ctx, ns, rules, &route_meta),
        Rules::L4(rules) => l4::build(ctx, route.kind, ns, rules, &route_meta),
    };
    built.seal();
    built
}

/// Which listeners of `gw` a parentRef names.
fn parent_listeners(
    gw: &GatewayState,
    pr: &ParentRefSpec,
    listener_set: Option<&ObjectKey>,
) -> Vec<usize> {
    gw.listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| match (&l.owner, listener_set) {
            (Owner::Gateway, None) => true,
            (Owner::ListenerSet(k), Some(want)) => k == want,
            _ => false,
        })
        .filter(|(_, l)| {
            pr.section_name.as_ref().is_none_or(|s| *s == l.spec.name)
                && pr.port.is_none_or(|p| p == l.spec.port)
        })
        .map(|(i, _)| i)
        .collect()
}

fn namespace_allowed(ctx: &Ctx<'_>, l: &ListenerState, owner_ns: &str, route_ns: &str) -> bool {
    // Borrowed, not copied: this runs for every route on every listener.
    let ns = l
        .spec
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    match ns.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Selector" => ns
            .and_then(|n| n.selector.as_ref())
            .is_some_and(|s| s.matches(&ctx.labels(route_ns))),
        "None" => false,
        _ => owner_ns == route_ns,
    }
}

fn attach(
    ctx: &Ctx<'_>,
    memo: &mut Memo,
    gws: &mut [GatewayState],
    route: &RouteObj,
) -> Option<RouteStatus> {
    // Kept per route in the statuses: room for exactly its parentRefs.
    let mut parents = Vec::with_capacity(route.spec.parent_refs.len());
    let mut built: Option<Arc<Built>> = None;
    let g = route.meta.generation;
    for pr in &route.spec.parent_refs {
        let group = pr.group.as_deref().unwrap_or(GATEWAY_GROUP);
        let kind = pr.kind.as_deref().unwrap_or("Gateway");
        if group != GATEWAY_GROUP {
            continue;
        }
        // Compared borrowed: this runs for every route on every translation.
        let ns = pr.namespace.as_deref().unwrap_or(&route.key.namespace);
        let is_target = |k: &ObjectKey| k.name == pr.name && k.namespace == ns;
        // Find the Gateway (directly, or through a ListenerSet) among ours.
        let (gi, ls) = match kind {
            "Gateway" => match gws.iter().position(|g| is_target(&g.key)) {
                Some(i) => (i, None),
                None => continue,
            },
            "ListenerSet" => match gws.iter().position(|g| {
                g.listeners
                    .iter()
                    .any(|l| matches!(&l.owner, Owner::ListenerSet(k) if is_target(k)))
            }) {
                Some(i) => (i, Some(ObjectKey::new(ns, &pr.name))),
                None => continue,
            },
            _ => continue,
        };
        let b =
            built.get_or_insert_with(|| memo.built(route.kind, route.key, || build(ctx, route)));
        let gw = &mut gws[gi];
        let owner_ns = ls.as_ref().map_or(&gw.key.namespace, |k| &k.namespace);
        let candidates = parent_listeners(gw, pr, ls.as_ref());
        let accepted_problem = if candidates.is_empty() {
            Some(Problem::new(
                Reason::NoMatchingParent,
                match (&pr.section_name, pr.port) {
                    (Some(s), _) => format!(
                        "the parent has no listener named {s:?}{}",
                        pr.port.map(|p| format!(" on port {p}")).unwrap_or_default()
                    ),
                    (None, Some(p)) => format!("the parent has no listener on port {p}"),
                    _ => "the parent has no listeners".to_string(),
                },
            ))
        } else {
            let allowed: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&i| {
                    let l = &gw.listeners[i];
                    l.attachable()
                        && l.allows_kind(route.kind.as_str())
                        && namespace_allowed(ctx, l, owner_ns, &route.key.namespace)
                })
                .collect();
            if allowed.is_empty() {
                Some(Problem::new(
                    Reason::NotAllowedByListeners,
                    format!(
                        "no listener of the parent admits a {} from namespace {:?} (allowedRoutes, kinds, or listener invalid)",
                        route.kind, route.key.namespace
                    ),
                ))
            } else {
                let uses_hostnames = matches!(
                    route.kind,
                    Kind::HTTPRoute | Kind::GRPCRoute | Kind::TLSRoute
                );
                let mut any = false;
                for i in allowed {
                    let l = &mut gw.listeners[i];
                    let hosts = if uses_hostnames {
                        hostname::route_hostnames_on(
                            l.spec.hostname.as_deref(),
                            &route.spec.hostnames,
                        )
                    } else {
                        Ok(vec![])
                    };
                    let Ok(hosts) = hosts else { continue };
                    any = true;
                    if b.all_invalid {
                        continue;
                    }
                    l.attached += 1;
                    if b.http_rules > 0 {
                        l.http_rules.extend(b.http_on(&hosts).iter().cloned());
                    }
                    if let Some(l4) = &b.l4 {
                        let mut l4 = l4.clone();
                        l4.hostnames = hosts.clone();
                        l.l4_routes.push(l4);
                    }
                }
                if any {
                    if b.all_invalid {
                        b.invalid.clone()
                    } else {
                        None
                    }
                } else {
                    Some(Problem::new(
                        Reason::NoMatchingListenerHostname,
                        "none of the route's hostnames matches a hostname of the parent's listeners",
                    ))
                }
            }
        };
        let mut conditions = vec![
            cond(
                ACCEPTED,
                Reason::Accepted,
                "route is accepted",
                accepted_problem.as_ref(),
                g,
            ),
            cond(
                RESOLVED_REFS,
                Reason::ResolvedRefs,
                "all references are resolved",
                b.unresolved.as_ref(),
                g,
            ),
        ];
        if let (Some(p), false) = (&b.invalid, b.all_invalid) {
            conditions.push(condition(
                PARTIALLY_INVALID,
                true,
                p.reason,
                p.message.clone(),
                g,
            ));
        }
        parents.push(ParentStatus {
            parent_ref: ParentRef {
                group: Some(group.to_string()),
                kind: Some(kind.to_string()),
                namespace: pr.namespace.clone(),
                name: pr.name.clone(),
                section_name: pr.section_name.clone(),
                port: pr.port,
            },
            controller_name: ctx.input.options.controller_name.clone(),
            conditions,
        });
    }
    if parents.is_empty() {
        None
    } else {
        Some(RouteStatus { parents })
    }
}

/// Parse a Gateway API `Duration` (`1h`, `10s`, `500ms`, `1m30s`) into milliseconds.
pub(crate) fn duration_ms(s: &str) -> Option<u64> {
    static WHOLE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^(?:([0-9]{1,5})(h|ms|m|s))+$").expect("valid regex"));
    static PART: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"([0-9]{1,5})(h|ms|m|s)").expect("valid regex"));
    let (re, part) = (&*WHOLE, &*PART);
    if !re.is_match(s) {
        return None;
    }
    let mut total = 0u64;
    for c in part.captures_iter(s) {
        let n: u64 = c[1].parse().ok()?;
        total += n * match &c[2] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            _ => 1,
        };
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration_ms("10s"), Some(10_000));
        assert_eq!(super::duration_ms("500ms"), Some(500));
        assert_eq!(super::duration_ms("1m30s"), Some(90_000));
        assert_eq!(super::duration_ms("1h"), Some(3_600_000));
        assert_eq!(super::duration_ms("0s"), Some(0));
        assert_eq!(super::duration_ms("10"), None);
    }
}
