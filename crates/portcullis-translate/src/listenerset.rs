//! ListenerSet attachment (GEP-1713): listeners declared outside the Gateway.
//!
//! Not implemented yet: ListenerSets get no status and their listeners are
//! not served. The `ListenerSet` feature is not claimed until this is done.

use portcullis_store::status::Statuses;

use crate::Input;
use crate::gateway::GatewayState;
use crate::refs::Grants;

/// Attach ListenerSets to their Gateways.
pub(crate) fn attach(_input: &Input<'_>, _gws: &mut [GatewayState], _grants: &Grants, _statuses: &mut Statuses) {}
