//! Ports of the upstream conformance tests, one Rust function per test, grouped
//! by area. `registry.rs` lists every upstream test with its features and
//! manifests (generated from the upstream sources) and links the ported ones.

use crate::suite::{TestDef, TestFn};

pub const INFRA: &str = "gateway-conformance-infra";
pub const APP: &str = "gateway-conformance-app-backend";
pub const WEB: &str = "gateway-conformance-web-backend";

/// Defines a test function `fn name(ctx: &mut Ctx) -> BoxFut<'_>` from a body.
macro_rules! test_fn {
    ($name:ident, |$ctx:ident| $body:block) => {
        pub fn $name($ctx: &mut Ctx) -> BoxFut<'_> {
            Box::pin(async move { $body })
        }
    };
}

mod backendtls;
mod frontend_tls;
mod gateway;
mod grpc;
mod httproute_backends;
mod httproute_cors;
mod httproute_ext_matching;
mod httproute_filters;
mod httproute_matching;
mod httproute_status;
mod httproute_traffic;
pub mod l4;
mod l4_traffic;
mod listenerset;
mod udp;

include!("registry.rs");

fn t(
    name: &'static str,
    features: &'static [&'static str],
    manifests: &'static [&'static str],
    provisional: bool,
    needs_cluster: Option<&'static str>,
    run: Option<TestFn>,
) -> TestDef {
    TestDef {
        name,
        features,
        manifests,
        provisional,
        needs_cluster,
        run,
    }
}
