//! Pure translation: a [`Snapshot`] in, the config IR and every status out.
//!
//! This crate does no I/O and knows no clock: everything that varies (the
//! address pool, previous address assignments, ports that failed to bind) is
//! an explicit input, so the same input always gives the same output. That is
//! what makes golden tests possible (`tests/golden/*.in.yaml` → `*.out.yaml`).
//!
//! The order of work follows the Gateway API's own dependency order:
//! GatewayClasses → Gateways and their listeners (plus ListenerSets) → routes
//! attached to listeners (which fills `attachedRoutes`) → IR per bound port.
#![deny(missing_docs)]

mod addresses;
mod attach;
mod backends;
mod client;
mod conditions;
mod conflicts;
mod features;
mod gateway;
mod gateway_status;
mod hostname;
mod listener;
mod listenerset;
mod lower;
mod memo;
// Some view fields are read only by ListenerSet and Gateway TLS translation, still in progress.
#[allow(dead_code)]
mod model;
mod policy;
mod reconcile;
mod refs;
mod routes;
mod security;
mod tls;
mod traffic;
mod traffic_fields;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use portcullis_ir::Config;
use portcullis_store::Snapshot;
use portcullis_store::status::Statuses;

pub use features::{PROVISIONING_FEATURES, SUPPORTED_FEATURES};
pub use lower::INGRESS_CLASS_LABEL;
pub use memo::Memo;
pub use reconcile::Reconciler;

/// The controller name Portcullis answers to.
pub const CONTROLLER_NAME: &str = "portcullis.dev/gateway-controller";

/// Settings that do not come from the resources.
#[derive(Clone, Debug)]
pub struct Options {
    /// `spec.controllerName` of the GatewayClasses this controller serves.
    pub controller_name: String,
    /// Pool to give Gateways without `spec.addresses` an address of their own.
    pub address_pool: Option<ipnet::IpNet>,
    /// Address used when there is neither `spec.addresses` nor a pool.
    pub bind_address: IpAddr,
    /// A proxy is provisioned per Gateway (Kubernetes mode), so the
    /// features of generated infrastructure are claimed too
    /// ([`PROVISIONING_FEATURES`]).
    pub provisioning: bool,
    /// Ports no listener may use, with why (Kubernetes mode: the provisioned
    /// proxy's own admin port). A listener on one is not accepted
    /// (`PortUnavailable`) and not served.
    pub reserved_ports: BTreeMap<i32, String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_name: CONTROLLER_NAME.to_string(),
            address_pool: None,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            provisioning: false,
            reserved_ports: BTreeMap::new(),
        }
    }
}

/// Everything translation reads besides the snapshot.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The resources.
    pub snapshot: &'a Snapshot,
    /// Settings.
    pub options: &'a Options,
    /// Pool addresses given out before, by Gateway, to keep assignments stable.
    pub previous_addresses: BTreeMap<portcullis_store::ObjectKey, IpAddr>,
    /// Sockets the data plane could not bind, with the OS error.
    pub bind_errors: BTreeMap<SocketAddr, String>,
}

/// What translation produces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Output {
    /// The configuration to serve.
    pub config: Config,
    /// The status of every Gateway API object this controller is responsible for.
    pub statuses: Statuses,
    /// Address of every Gateway (pool assignments included), to feed back as
    /// `previous_addresses` next time.
    pub addresses: BTreeMap<portcullis_store::ObjectKey, IpAddr>,
}

/// Translate a snapshot. Pure: no I/O, no clock; condition transition times
/// are left empty for the caller to fill (see
/// [`portcullis_store::status::carry_transition_times`]).
pub fn translate(input: &Input<'_>) -> Output {
    translate_with(input, &mut Memo::new())
}

/// [`translate`], reusing what an earlier translation with the same `memo`
/// computed for objects that did not change (same `Arc`s in the snapshot);
/// the output is exactly [`translate`]'s. See [`Memo`].
pub fn translate_with(input: &Input<'_>, memo: &mut Memo) -> Output {
    memo.begin(input.snapshot);
    let mut statuses = Statuses::new();
    let classes = gateway::classes(input, &mut statuses);
    let grants = refs::Grants::new(input.snapshot);
    let mut gws = gateway::gateways(input, &classes, &grants);
    listenerset::attach(input, &mut gws, &grants, &mut statuses);
    for gw in &mut gws {
        conflicts::conflicts(&mut gw.listeners);
    }
    let mut ctx = routes::Ctx::new(input, &grants);
    routes::attach_all(&mut ctx, memo, &mut gws, &mut statuses);
    policy::apply(input, &grants, &mut gws, &mut statuses);
    security::apply(input, &grants, &mut gws, &mut statuses);
    traffic::apply(input, &mut gws, &mut statuses);
    client::apply(input, &mut gws, &mut statuses);
    let (config, addresses) = gateway::finish(input, gws, &mut statuses);
    Output {
        config,
        statuses,
        addresses,
    }
}

/// Kinds of object whose status this controller owns, for cleanup bookkeeping.
pub fn owned_kinds() -> BTreeSet<portcullis_store::Kind> {
    portcullis_store::Kind::ALL
        .into_iter()
        .filter(|k| k.has_status())
        .collect()
}
