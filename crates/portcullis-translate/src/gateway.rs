//! GatewayClasses, Gateways and listeners: acceptance, listener validation
//! (protocol, route kinds, TLS references), addresses. Conflicts across
//! listeners are in `conflicts.rs`, the Gateway statuses in
//! `gateway_status.rs`, the IR in `lower.rs`; [`finish`] ties the last two.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use portcullis_ir as ir;
use portcullis_store::status::{GatewayClassStatus, GroupKind, Status, Statuses, SupportedFeature};
use portcullis_store::{GATEWAY_GROUP, Kind, ObjectKey, ObjectRef};

use crate::conditions::*;
use crate::model::{GatewayClassSpec, GatewaySpec, ListenerSpec, Meta, Obj};
use crate::refs::Grants;
use crate::{Input, features};

/// Names of the GatewayClasses this controller serves and accepted.
pub(crate) type Classes = BTreeSet<String>;

/// Accept our GatewayClasses and write their status.
pub(crate) fn classes(input: &Input<'_>, statuses: &mut Statuses) -> Classes {
    let mut ours = Classes::new();
    for (key, gc) in &input.snapshot.gateway_classes {
        let gc = Obj::<GatewayClassSpec>::of(&gc.metadata, &gc.spec);
        if gc.spec.controller_name != input.options.controller_name {
            continue;
        }
        let gen_ = gc.metadata.generation;
        let problem = gc.spec.parameters_ref.as_ref().map(|p| {
            Problem::new(
                Reason::InvalidParameters,
                format!(
                    "parametersRef {}/{} {} is not supported by this controller",
                    p.group, p.kind, p.name
                ),
            )
        });
        if problem.is_none() {
            ours.insert(key.name.clone());
        }
        let conditions = vec![
            cond(
                ACCEPTED,
                Reason::Accepted,
                "GatewayClass is accepted by portcullis",
                problem.as_ref(),
                gen_,
            ),
            condition(
                SUPPORTED_VERSION,
                true,
                Reason::SupportedVersion,
                "Gateway API v1.6 CRDs are supported",
                gen_,
            ),
        ];
        let supported_features = features::SUPPORTED_FEATURES
            .iter()
            .map(|f| SupportedFeature {
                name: f.to_string(),
            })
            .collect();
        statuses.insert(
            ObjectRef {
                kind: Kind::GatewayClass,
                key: key.clone(),
            },
            Status::GatewayClass(GatewayClassStatus {
                conditions,
                supported_features,
            }),
        );
    }
    ours
}

/// Listener protocols Portcullis serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
}

impl Proto {
    fn parse(s: &str) -> Option<Proto> {
        Some(match s {
            "HTTP" => Proto::Http,
            "HTTPS" => Proto::Https,
            "TLS" => Proto::Tls,
            "TCP" => Proto::Tcp,
            "UDP" => Proto::Udp,
            _ => return None,
        })
    }
    /// Route kinds a listener of this protocol can serve.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Proto::Http | Proto::Https => &["HTTPRoute", "GRPCRoute"],
            Proto::Tls => &["TLSRoute"],
            Proto::Tcp => &["TCPRoute"],
            Proto::Udp => &["UDPRoute"],
        }
    }
    /// Listeners sharing a port must agree on this.
    pub(crate) fn family(self) -> u8 {
        match self {
            Proto::Http => 0,
            Proto::Https | Proto::Tls => 1,
            Proto::Tcp => 2,
            Proto::Udp => 3,
        }
    }
    /// 1 for a UDP socket, 0 for a TCP one.
    pub(crate) fn socket(self) -> u8 {
        if self == Proto::Udp { 1 } else { 0 }
    }
}

/// Who declared a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Gateway,
    ListenerSet(ObjectKey),
}

/// A listener being translated.
#[derive(Clone, Debug)]
pub(crate) struct ListenerState {
    pub owner: Owner,
    /// Generation of the owning object.
    pub generation: i64,
    pub spec: ListenerSpec,
    pub protocol: Option<Proto>,
    pub supported_kinds: Vec<GroupKind>,
    pub accepted: Option<Problem>,
    pub resolved: Option<Problem>,
    pub conflicted: Option<(Reason, String)>,
    pub tls: Option<ir::ListenerTls>,
    pub attached: i32,
    pub http_rules: Vec<ir::HttpRouteRule>,
    pub l4_routes: Vec<ir::L4Route>,
    /// ClientTrafficPolicy: request settings of this listener.
    pub client: Option<std::sync::Arc<ir::ClientTraffic>>,
    /// ClientTrafficPolicy: connection settings of this listener's socket.
    pub client_conn: Option<ir::ClientConnection>,
}

impl ListenerState {
    /// Routes may attach: the listener is accepted and not in conflict.
    pub fn attachable(&self) -> bool {
        self.protocol.is_some() && self.accepted.is_none() && self.conflicted.is_none()
    }
    /// Whether `kind` may attach here.
    pub fn allows_kind(&self, kind: &str) -> bool {
        self.supported_kinds
            .iter()
            .any(|k| k.group == GATEWAY_GROUP && k.kind == kind)
    }
    /// Served by the data plane.
    pub fn programmed(&self) -> bool {
        self.attachable() && self.resolved.is_none()
    }
}

/// A Gateway being translated.
#[derive(Clone, Debug)]
pub(crate) struct GatewayState {
    pub key: ObjectKey,
    pub meta: Meta,
    pub spec: GatewaySpec,
    pub address: Result<IpAddr, Problem>,
    pub requested_pool: bool,
    pub listeners: Vec<ListenerState>,
    /// Why `spec.infrastructure.parametersRef` is unusable, if it is.
    pub params_problem: Option<Problem>,
    /// `spec.tls.backend.clientCertificateRef`, resolved.
    pub backend_client_cert: Result<Option<ir::Certificate>, Problem>,
    /// ListenerSets whose parent is this Gateway, in precedence order.
    pub listener_sets: Vec<crate::listenerset::ListenerSetState>,
}

/// Build the state of every Gateway of our classes.
pub(crate) fn gateways(input: &Input<'_>, classes: &Classes, grants: &Grants) -> Vec<GatewayState> {
    let mut out = Vec::new();
    for (key, gw) in &input.snapshot.gateways {
        let gw = Obj::<GatewaySpec>::of(&gw.metadata, &gw.spec);
        if !classes.contains(&gw.spec.gateway_class_name) {
            continue;
        }
        let mut listeners: Vec<ListenerState> = gw
            .spec
            .listeners
            .iter()
            .map(|l| {
                listener(
                    input,
                    grants,
                    key,
                    "Gateway",
                    Owner::Gateway,
                    gw.metadata.generation,
                    l,
                )
            })
            .collect();
        for l in &mut listeners {
            apply_frontend_validation(input, grants, &key.namespace, &gw.spec, l);
        }
        let params_problem = infrastructure_parameters(input, &key.namespace, &gw.spec);
        let backend_client_cert =
            crate::tls::backend_client_certificate(input, grants, &key.namespace, &gw.spec);
        out.push(GatewayState {
            key: key.clone(),
            address: Err(Problem::new(Reason::Pending, "address not assigned yet")),
            requested_pool: false,
            meta: gw.metadata,
            spec: gw.spec,
            listeners,
            listener_sets: vec![],
            backend_client_cert,
            params_problem,
        });
    }
    assign_addresses(input, &mut out);
    out
}

/// Validate one listener on its own (conflicts are found across listeners later).
pub(crate) fn listener(
    input: &Input<'_>,
    grants: &Grants,
    owner_key: &ObjectKey,
    owner_kind: &str,
    owner: Owner,
    generation: i64,
    spec: &ListenerSpec,
) -> ListenerState {
    let protocol = Proto::parse(&spec.protocol);
    let mut st = ListenerState {
        owner,
        generation,
        spec: spec.clone(),
        protocol,
        supported_kinds: vec![],
        accepted: None,
        resolved: None,
        conflicted: None,
        tls: None,
        attached: 0,
        http_rules: vec![],
        l4_routes: vec![],
        client: None,
        client_conn: None,
    };
    let Some(proto) = protocol else {
        st.accepted = Some(Problem::new(
            Reason::UnsupportedProtocol,
            format!(
                "protocol {:?} is not supported; use HTTP, HTTPS, TLS, TCP or UDP",
                spec.protocol
            ),
        ));
        return st;
    };
    // Route kinds (spec: ResolvedRefs=False/InvalidRouteKinds for any kind that is not supported).
    let allowed = spec.allowed_routes.as_ref().and_then(|a| a.kinds.clone());
    match allowed {
        None => {
            st.supported_kinds = proto
                .kinds()
                .iter()
                .map(|k| GroupKind {
                    group: GATEWAY_GROUP.into(),
                    kind: k.to_string(),
                })
                .collect();
        }
        Some(kinds) => {
            let mut invalid = vec![];
            for k in kinds {
                let group = k.group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_string());
                if group == GATEWAY_GROUP && proto.kinds().contains(&k.kind.as_str()) {
                    let gk = GroupKind {
                        group,
                        kind: k.kind.clone(),
                    };
                    if !st.supported_kinds.contains(&gk) {
                        st.supported_kinds.push(gk);
                    }
                } else {
                    invalid.push(format!("{}/{}", group, k.kind));
                }
            }
            if !invalid.is_empty() {
                st.resolved = Some(Problem::new(
                    Reason::InvalidRouteKinds,
                    format!(
                        "route kinds not supported on a {} listener: {}",
                        spec.protocol,
                        invalid.join(", ")
                    ),
                ));
            }
        }
    }
    // TLS.
    if matches!(proto, Proto::Https | Proto::Tls) {
        let mode = spec
            .tls
            .as_ref()
            .and_then(|t| t.mode.clone())
            .unwrap_or_else(|| "Terminate".into());
        let mode = if mode == "Passthrough" {
            ir::TlsMode::Passthrough
        } else {
            ir::TlsMode::Terminate
        };
        if proto == Proto::Https && mode == ir::TlsMode::Passthrough {
            st.accepted = Some(Problem::new(
                Reason::UnsupportedValue,
                "an HTTPS listener cannot use tls.mode Passthrough; use protocol TLS",
            ));
            return st;
        }
        let refs = spec
            .tls
            .as_ref()
            .map(|t| t.certificate_refs.clone())
            .unwrap_or_default();
        let mut certs = vec![];
        let mut problem = None;
        if mode == ir::TlsMode::Terminate {
            for r in &refs {
                match crate::backends::certificate(
                    input,
                    grants,
                    owner_kind,
                    &owner_key.namespace,
                    r,
                ) {
                    Ok(c) => certs.push(c),
                    Err(p) => {
                        problem.get_or_insert(p);
                    }
                }
            }
            if refs.is_empty() {
                problem = Some(Problem::new(
                    Reason::InvalidCertificateRef,
                    "tls.certificateRefs is empty; a listener that terminates TLS needs a certificate",
                ));
            }
        }
        if let Some(p) = problem
            && st.resolved.is_none()
        {
            st.resolved = Some(p);
        }
        st.tls = Some(ir::ListenerTls {
            mode,
            certificates: certs,
            client_validation: None,
        });
    }
    st
}

/// `spec.infrastructure.parametersRef` (GEP-1867): a ConfigMap in the Gateway's
/// namespace is accepted (standalone mode has no per-Gateway infrastructure to
/// configure; Kubernetes mode reads it when provisioning); anything else, or a
/// missing object, is `Accepted=False/InvalidParameters`.
fn infrastructure_parameters(input: &Input<'_>, ns: &str, spec: &GatewaySpec) -> Option<Problem> {
    let r = spec.infrastructure.as_ref()?.parameters_ref.as_ref()?;
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        return Some(Problem::new(
            Reason::InvalidParameters,
            format!(
                "parametersRef {}/{} {} is not a supported kind; use a core ConfigMap",
                r.group, r.kind, r.name
            ),
        ));
    }
    if !input
        .snapshot
        .config_maps
        .contains_key(&ObjectKey::new(ns, r.name.clone()))
    {
        return Some(Problem::new(
            Reason::InvalidParameters,
            format!("parametersRef ConfigMap {ns}/{} does not exist", r.name),
        ));
    }
    None
}

/// Client-certificate validation of TLS-terminating listeners (GEP-91).
pub(crate) fn apply_frontend_validation(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    spec: &GatewaySpec,
    l: &mut ListenerState,
) {
    let Some(tls) = l.tls.as_mut() else { return };
    if tls.mode != ir::TlsMode::Terminate {
        return;
    }
    match crate::tls::frontend(input, grants, ns, spec, l.spec.port) {
        Ok(v) => tls.client_validation = v,
        Err((resolved, accepted)) => {
            l.resolved.get_or_insert(resolved);
            l.accepted.get_or_insert(accepted);
        }
    }
}

/// Give each Gateway its address: `spec.addresses`, else the pool (stable), else the bind address.
fn assign_addresses(input: &Input<'_>, gws: &mut [GatewayState]) {
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    let mut pending = vec![];
    for (i, gw) in gws.iter_mut().enumerate() {
        let mut explicit = None;
        let mut problem = None;
        for a in &gw.spec.addresses {
            let t = a.type_.as_deref().unwrap_or("IPAddress");
            match (t, a.value.as_deref()) {
                ("IPAddress", Some(v)) if !v.is_empty() => match v.parse::<IpAddr>() {
                    Ok(ip) if explicit.is_none() => explicit = Some(ip),
                    Ok(_) => {}
                    Err(_) => {
                        problem = Some(Problem::new(
                            Reason::UnsupportedAddress,
                            format!("address {v:?} is not an IP address"),
                        ))
                    }
                },
                ("IPAddress", _) => {}
                (t, _) => {
                    problem = Some(Problem::new(
                        Reason::UnsupportedAddress,
                        format!("address type {t:?} is not supported; use IPAddress"),
                    ))
                }
            }
        }
        if let Some(p) = problem {
            gw.address = Err(p);
        } else if let Some(ip) = explicit {
            used.insert(ip);
            gw.address = Ok(ip);
        } else if input.options.address_pool.is_some() {
            gw.requested_pool = true;
            pending.push(i);
        } else {
            gw.address = Ok(input.options.bind_address);
        }
    }
    let Some(pool) = input.options.address_pool else {
        return;
    };
    // Keep previous assignments first, so that assignments are stable.
    let mut rest = vec![];
    for i in pending {
        match input.previous_addresses.get(&gws[i].key) {
            Some(ip) if pool.contains(ip) && !used.contains(ip) => {
                used.insert(*ip);
                gws[i].address = Ok(*ip);
            }
            _ => rest.push(i),
        }
    }
    let mut free = pool.hosts().filter(|ip| !used.contains(ip));
    for i in rest {
        gws[i].address = match free.next() {
            Some(ip) => Ok(ip),
            None => Err(Problem::new(
                Reason::AddressNotAssigned,
                format!("address pool {pool} is exhausted"),
            )),
        };
    }
}

/// Gateway statuses and the IR, once routes are attached.
pub(crate) fn finish(
    input: &Input<'_>,
    gws: Vec<GatewayState>,
    statuses: &mut Statuses,
) -> (ir::Config, BTreeMap<ObjectKey, IpAddr>) {
    let mut ports = crate::lower::Ports::default();
    let mut addresses = BTreeMap::new();
    for gw in gws {
        let accepted = crate::gateway_status::render(input, &gw, statuses);
        let Ok(ip) = gw.address else { continue };
        if gw.requested_pool || !gw.spec.addresses.is_empty() {
            addresses.insert(gw.key.clone(), ip);
        }
        if accepted {
            let derived = gw.meta.labels.contains_key(crate::INGRESS_CLASS_LABEL);
            ports.add(&gw.key, derived, ip, gw.listeners);
        }
    }
    (ports.finish(), addresses)
}
