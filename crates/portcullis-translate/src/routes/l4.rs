//! TLSRoute, TCPRoute and UDPRoute rules → IR (weighted backends of the route).

use portcullis_ir as ir;
use portcullis_store::Kind;

use super::http::{FilterIssues, backend_refs};
use super::{Built, Ctx};
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::model::L4Rule;

/// Build the IR of a layer-4 route: the first rule's backends (these kinds have one rule in practice).
pub(super) fn build(
    ctx: &Ctx<'_>,
    kind: Kind,
    ns: &str,
    rules: &[L4Rule],
    meta: &dyn Fn(usize, Option<String>) -> ir::RouteMeta,
) -> Built {
    let mut out = Built::default();
    let Some(rule) = rules.first() else {
        out.invalid = Some(Problem::new(
            Reason::UnsupportedValue,
            "the route has no usable rule",
        ));
        out.all_invalid = true;
        return out;
    };
    if rules.len() > 1 {
        out.invalid = Some(Problem::new(
            Reason::UnsupportedValue,
            format!(
                "only the first rule of a {kind} is served; {} rules dropped",
                rules.len() - 1
            ),
        ));
    }
    let mut issues = FilterIssues::default();
    let backends = backend_refs(ctx, kind.as_str(), ns, &rule.backend_refs, &mut issues);
    out.unresolved = issues.unresolved;
    out.l4 = Some(ir::L4Route {
        meta: meta(0, rule.name.clone()),
        hostnames: vec![],
        backends,
        traffic: None,
    });
    out
}
