//! Views of GatewayClasses, Gateways, ListenerSets, ReferenceGrants and
//! BackendTLSPolicies.

use portcullis_store::types as t;

use super::{LabelSelector, ObjectRef, label_selector, object_ref, variant};

#[derive(Clone, Debug, Default)]
pub(crate) struct GatewayClassSpec {
    pub controller_name: String,
    pub parameters_ref: Option<ParametersRef>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ParametersRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GatewaySpec {
    pub gateway_class_name: String,
    pub addresses: Vec<AddressSpec>,
    pub listeners: Vec<ListenerSpec>,
    pub allowed_listeners: Option<AllowedListeners>,
    pub infrastructure: Option<Infrastructure>,
    pub tls: Option<GatewayTls>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Infrastructure {
    pub parameters_ref: Option<ParametersRef>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GatewayTls {
    pub backend: Option<GatewayTlsBackend>,
    pub frontend: Option<GatewayTlsFrontend>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GatewayTlsBackend {
    pub client_certificate_ref: Option<ObjectRef>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GatewayTlsFrontend {
    pub default: FrontendTlsConfig,
    pub per_port: Vec<FrontendPerPort>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FrontendPerPort {
    pub port: i32,
    pub tls: FrontendTlsConfig,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FrontendTlsConfig {
    pub validation: Option<FrontendValidation>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FrontendValidation {
    pub ca_certificate_refs: Vec<ObjectRef>,
    pub mode: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AllowedListeners {
    pub namespaces: Option<FromNamespaces>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FromNamespaces {
    pub from: Option<String>,
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AddressSpec {
    pub type_: Option<String>,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerSpec {
    pub name: String,
    pub hostname: Option<String>,
    pub port: i32,
    pub protocol: String,
    pub tls: Option<ListenerTlsSpec>,
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerTlsSpec {
    pub mode: Option<String>,
    pub certificate_refs: Vec<ObjectRef>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AllowedRoutes {
    pub namespaces: Option<FromNamespaces>,
    pub kinds: Option<Vec<RouteGroupKind>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RouteGroupKind {
    pub group: Option<String>,
    pub kind: String,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerSetSpec {
    pub parent_ref: ObjectRef,
    pub listeners: Vec<ListenerSpec>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ReferenceGrantSpec {
    pub from: Vec<GrantFrom>,
    pub to: Vec<GrantTo>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GrantTo {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct BackendTlsPolicySpec {
    pub target_refs: Vec<PolicyTargetRef>,
    pub validation: BackendTlsValidation,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct PolicyTargetRef {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub section_name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct BackendTlsValidation {
    pub ca_certificate_refs: Vec<ObjectRef>,
    pub well_known_ca_certificates: Option<String>,
    pub hostname: String,
    pub subject_alt_names: Vec<SanSpec>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct SanSpec {
    pub type_: String,
    pub hostname: Option<String>,
    pub uri: Option<String>,
}

// Conversions from the generated types. Enum values keep their API spelling.

impl From<&t::GatewayClassSpec> for GatewayClassSpec {
    fn from(s: &t::GatewayClassSpec) -> Self {
        GatewayClassSpec {
            controller_name: s.controller_name.clone(),
            parameters_ref: s.parameters_ref.as_ref().map(|p| ParametersRef {
                group: p.group.clone(),
                kind: p.kind.clone(),
                name: p.name.clone(),
                namespace: p.namespace.clone(),
            }),
        }
    }
}

/// A listener of a Gateway or of a ListenerSet (two generated copies of one shape).
macro_rules! listener {
    ($l:expr) => {{
        let l = $l;
        ListenerSpec {
            name: l.name.clone(),
            hostname: l.hostname.clone(),
            port: l.port,
            protocol: l.protocol.clone(),
            tls: l.tls.as_ref().map(|t| ListenerTlsSpec {
                mode: t.mode.as_ref().map(|m| variant(m).to_string()),
                certificate_refs: t
                    .certificate_refs
                    .iter()
                    .flatten()
                    .map(|r| object_ref!(r))
                    .collect(),
            }),
            allowed_routes: l.allowed_routes.as_ref().map(|a| AllowedRoutes {
                namespaces: a.namespaces.as_ref().map(|n| FromNamespaces {
                    from: n.from.as_ref().map(|f| variant(f).to_string()),
                    selector: n.selector.as_ref().map(|s| label_selector!(s)),
                }),
                kinds: a.kinds.as_ref().map(|ks| {
                    ks.iter()
                        .map(|k| RouteGroupKind {
                            group: k.group.clone(),
                            kind: k.kind.clone(),
                        })
                        .collect()
                }),
            }),
        }
    }};
}

/// Frontend TLS validation (`default` and `perPort` are two generated copies).
macro_rules! frontend_tls {
    ($c:expr) => {{
        FrontendTlsConfig {
            validation: $c.validation.as_ref().map(|v| FrontendValidation {
                ca_certificate_refs: v
                    .ca_certificate_refs
                    .iter()
                    .map(|r| object_ref!(r))
                    .collect(),
                mode: v.mode.as_ref().map(|m| variant(m).to_string()),
            }),
        }
    }};
}

impl From<&t::GatewaySpec> for GatewaySpec {
    fn from(s: &t::GatewaySpec) -> Self {
        GatewaySpec {
            gateway_class_name: s.gateway_class_name.clone(),
            addresses: s
                .addresses
                .iter()
                .flatten()
                .map(|a| AddressSpec {
                    type_: a.r#type.clone(),
                    value: a.value.clone(),
                })
                .collect(),
            listeners: s.listeners.iter().map(|l| listener!(l)).collect(),
            allowed_listeners: s.allowed_listeners.as_ref().map(|a| AllowedListeners {
                namespaces: a.namespaces.as_ref().map(|n| FromNamespaces {
                    from: n.from.as_ref().map(|f| variant(f).to_string()),
                    selector: n.selector.as_ref().map(|s| label_selector!(s)),
                }),
            }),
            infrastructure: s.infrastructure.as_ref().map(|i| Infrastructure {
                parameters_ref: i.parameters_ref.as_ref().map(|p| ParametersRef {
                    group: p.group.clone(),
                    kind: p.kind.clone(),
                    name: p.name.clone(),
                    namespace: None,
                }),
            }),
            tls: s.tls.as_ref().map(|tls| GatewayTls {
                backend: tls.backend.as_ref().map(|b| GatewayTlsBackend {
                    client_certificate_ref: b
                        .client_certificate_ref
                        .as_ref()
                        .map(|r| object_ref!(r)),
                }),
                frontend: tls.frontend.as_ref().map(|f| GatewayTlsFrontend {
                    default: frontend_tls!(f.default),
                    per_port: f
                        .per_port
                        .iter()
                        .flatten()
                        .map(|p| FrontendPerPort {
                            port: p.port,
                            tls: frontend_tls!(p.tls),
                        })
                        .collect(),
                }),
            }),
        }
    }
}

impl From<&t::ListenerSetSpec> for ListenerSetSpec {
    fn from(s: &t::ListenerSetSpec) -> Self {
        ListenerSetSpec {
            parent_ref: object_ref!(&s.parent_ref),
            listeners: s.listeners.iter().map(|l| listener!(l)).collect(),
        }
    }
}

impl From<&t::ReferenceGrantSpec> for ReferenceGrantSpec {
    fn from(s: &t::ReferenceGrantSpec) -> Self {
        ReferenceGrantSpec {
            from: s
                .from
                .iter()
                .map(|f| GrantFrom {
                    group: f.group.clone(),
                    kind: f.kind.clone(),
                    namespace: f.namespace.clone(),
                })
                .collect(),
            to: s
                .to
                .iter()
                .map(|t| GrantTo {
                    group: t.group.clone(),
                    kind: t.kind.clone(),
                    name: t.name.clone(),
                })
                .collect(),
        }
    }
}

impl From<&t::BackendTlsPolicySpec> for BackendTlsPolicySpec {
    fn from(s: &t::BackendTlsPolicySpec) -> Self {
        let v = &s.validation;
        BackendTlsPolicySpec {
            target_refs: s
                .target_refs
                .iter()
                .map(|r| PolicyTargetRef {
                    group: r.group.clone(),
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                    section_name: r.section_name.clone(),
                })
                .collect(),
            validation: BackendTlsValidation {
                ca_certificate_refs: v
                    .ca_certificate_refs
                    .iter()
                    .flatten()
                    .map(|r| object_ref!(r, no_namespace))
                    .collect(),
                well_known_ca_certificates: v.well_known_ca_certificates.clone(),
                hostname: v.hostname.clone(),
                subject_alt_names: v
                    .subject_alt_names
                    .iter()
                    .flatten()
                    .map(|n| SanSpec {
                        type_: variant(&n.r#type).to_string(),
                        hostname: n.hostname.clone(),
                        uri: n.uri.clone(),
                    })
                    .collect(),
            },
        }
    }
}
