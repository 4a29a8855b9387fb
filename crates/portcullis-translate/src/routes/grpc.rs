//! GRPCRoute rules → IR, lowered onto HTTP/2 paths (`/package.Service/Method`).
//!
//! - service and method, Exact → Exact path `/svc/method`
//! - service only → PathPrefix `/svc` (whole element, so `/svcX/..` does not match)
//! - method only → regex `/[^/]+/method`
//! - RegularExpression → regex `/(svc)/(method)` with `[^/]+` for an omitted part

use portcullis_ir as ir;

use super::http::{resolve_action, value_match};
use super::{Built, Ctx};
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::model::{GrpcMatchSpec, GrpcRule};

fn lower(m: &GrpcMatchSpec) -> Result<ir::HttpMatch, Problem> {
    let path = match &m.method {
        None => ir::PathMatch::Prefix("/".into()),
        Some(mm) => match (
            mm.type_.as_deref().unwrap_or("Exact"),
            mm.service.as_deref(),
            mm.method.as_deref(),
        ) {
            ("Exact", Some(s), Some(me)) => ir::PathMatch::Exact(format!("/{s}/{me}")),
            ("Exact", Some(s), None) => ir::PathMatch::Prefix(format!("/{s}")),
            ("Exact", None, Some(me)) => {
                ir::PathMatch::Regex(format!("/[^/]+/{}", regex::escape(me)))
            }
            ("Exact", None, None) => ir::PathMatch::Prefix("/".into()),
            (_, s, me) => {
                let re = format!("/{}/{}", s.unwrap_or("[^/]+"), me.unwrap_or("[^/]+"));
                regex::Regex::new(&re).map_err(|e| {
                    Problem::new(
                        Reason::UnsupportedValue,
                        format!("invalid method regular expression {re:?}: {e}"),
                    )
                })?;
                ir::PathMatch::Regex(re)
            }
        },
    };
    Ok(ir::HttpMatch {
        path,
        method: None,
        headers: m
            .headers
            .iter()
            .map(|h| value_match(h, true))
            .collect::<Result<_, _>>()?,
        query_params: vec![],
        grpc: true,
    })
}

/// Build the IR rules of a GRPCRoute.
pub(super) fn build(
    ctx: &Ctx<'_>,
    ns: &str,
    rules: &[GrpcRule],
    meta: &dyn Fn(usize, Option<String>) -> ir::RouteMeta,
) -> Built {
    let mut out = Built::default();
    let mut valid = 0;
    for (i, rule) in rules.iter().enumerate() {
        let ms: Result<Vec<_>, _> = if rule.matches.is_empty() {
            lower(&GrpcMatchSpec::default()).map(|m| vec![m])
        } else {
            rule.matches.iter().map(lower).collect()
        };
        let ms = match ms {
            Ok(m) => m,
            Err(p) => {
                out.invalid.get_or_insert(p);
                continue;
            }
        };
        let (filters, backends) = match resolve_action(
            ctx,
            "GRPCRoute",
            ns,
            &rule.filters,
            &rule.backend_refs,
            &mut out,
        ) {
            Ok(a) => a,
            Err(p) => {
                out.invalid.get_or_insert(Problem::new(
                    p.reason,
                    format!("rule {i} dropped: {}", p.message),
                ));
                continue;
            }
        };
        valid += 1;
        let action = ir::HttpAction {
            filters,
            backends,
            ..Default::default()
        };
        for (mi, m) in ms.into_iter().enumerate() {
            out.http.push(ir::HttpRouteRule {
                meta: meta(i, rule.name.clone()),
                hostnames: vec![],
                matches: m,
                match_index: mi,
                action: action.clone(),
            });
        }
    }
    out.all_invalid = valid == 0 && !rules.is_empty();
    out
}
