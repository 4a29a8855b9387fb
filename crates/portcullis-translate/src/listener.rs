//! One listener on its own (Gateway `spec.listeners[]`, ListenerSet
//! `spec.listeners[]`): protocol, allowed route kinds
//! (`ResolvedRefs=False/InvalidRouteKinds`), TLS mode and certificate
//! references, client-certificate validation (GEP-91). Conflicts across
//! listeners are found later, in `conflicts.rs`.

use portcullis_ir as ir;
use portcullis_store::status::GroupKind;
use portcullis_store::{GATEWAY_GROUP, ObjectKey};

use crate::Input;
use crate::conditions::*;
use crate::model::{GatewaySpec, ListenerSpec};
use crate::refs::Grants;

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
    pub http_rules: Vec<std::sync::Arc<ir::HttpRouteRule>>,
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
    if let Some(why) = input.options.reserved_ports.get(&spec.port) {
        st.accepted = Some(Problem::new(
            Reason::PortUnavailable,
            format!("port {} is reserved for {why}; use another port", spec.port),
        ));
        return st;
    }
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
