//! BackendTrafficPolicy (`portcullis.dev/v1alpha1`): each policy resolved into
//! its rate-limit rules, attached with [`crate::attach`] (the same precedence
//! and status rules as SecurityPolicy), and the effective one stored on every
//! route rule of the IR as an [`ir::RateLimit`], so the data plane only reads.
//!
//! Buckets: a rule counts each route rule it applies to in a bucket of its own
//! (as Envoy Gateway: a policy on a Gateway gives every route its own limit),
//! unless the rule is `shared`, when every route rule of the policy takes from
//! one. The bucket's identity is [`ir::traffic::RateLimitRule::id`].
//!
//! A policy that cannot be used (a regular expression that does not compile)
//! is `Accepted=False/Invalid` and still takes its scopes: its route rules are
//! answered 500 rather than served without the limit the operator asked for.

use std::sync::Arc;

use portcullis_ir as ir;
use portcullis_ir::traffic as rl;
use portcullis_store::status::{Status, Statuses};
use portcullis_store::traffic as api;
use portcullis_store::{Kind, ObjectKey, ObjectRef};

use crate::Input;
use crate::attach::{Attachment, PolicyInput};
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::gateway::{GatewayState, Owner};
use crate::model::Meta;
use crate::traffic_fields::{active, connection_timeouts, fault, ms, overrides, tcp};

/// Seconds in a `RateLimitUnit`.
fn unit_seconds(unit: &str) -> Result<u64, Problem> {
    Ok(match unit {
        "Second" => 1,
        "Minute" => 60,
        "Hour" => 3_600,
        "Day" => 86_400,
        "Month" => 30 * 86_400,
        "Year" => 365 * 86_400,
        other => {
            return Err(Problem::new(
                Reason::Invalid,
                format!("limit.unit: unsupported value {other:?}"),
            ));
        }
    })
}

fn regex_ok(at: &str, re: &str) -> Result<(), Problem> {
    regex::Regex::new(&format!("^(?:{re})$"))
        .map(|_| ())
        .map_err(|e| {
            Problem::new(
                Reason::Invalid,
                format!("{at}: invalid regular expression: {e}"),
            )
        })
}

fn selector(at: &str, c: &api::RateLimitSelectCondition) -> Result<rl::Selector, Problem> {
    let mut headers = vec![];
    for (i, h) in c.headers.iter().enumerate() {
        let at = format!("{at}.headers[{i}]");
        let value = match h.match_type.as_deref().unwrap_or("Exact") {
            "Distinct" => rl::ValueMatch::Distinct,
            "RegularExpression" => {
                let v = h.value.clone().unwrap_or_default();
                regex_ok(&format!("{at}.value"), &v)?;
                rl::ValueMatch::Regex(v)
            }
            _ => rl::ValueMatch::Exact(h.value.clone().unwrap_or_default()),
        };
        headers.push(rl::HeaderSelector {
            name: h.name.to_ascii_lowercase(),
            value,
            invert: h.invert.unwrap_or(false),
        });
    }
    let path = match &c.path {
        None => None,
        Some(p) => {
            let kind = match p.match_type.as_deref().unwrap_or("PathPrefix") {
                "Exact" => rl::PathKind::Exact,
                "RegularExpression" => {
                    regex_ok(&format!("{at}.path.value"), &p.value)?;
                    rl::PathKind::Regex
                }
                _ => rl::PathKind::Prefix,
            };
            Some(rl::PathSelector {
                kind,
                value: p.value.clone(),
                invert: p.invert.unwrap_or(false),
            })
        }
    };
    let source = match &c.source_cidr {
        None => None,
        Some(s) => {
            let net: ipnet::IpNet = s.value.parse().map_err(|_| {
                Problem::new(
                    Reason::Invalid,
                    format!("{at}.sourceCIDR.value: {:?} is not a CIDR", s.value),
                )
            })?;
            Some(rl::SourceSelector {
                cidr: net.trunc().to_string(),
                distinct: s.match_type.as_deref() == Some("Distinct"),
            })
        }
    };
    Ok(rl::Selector {
        headers,
        methods: c
            .methods
            .iter()
            .map(|m| rl::MethodSelector {
                method: m.value.clone(),
                invert: m.invert.unwrap_or(false),
            })
            .collect(),
        path,
        source,
    })
}

/// One rule, with the bucket id of its policy (`<ns>/<name>/<scope>/<index>`);
/// the route rule is appended at attachment unless the rule is shared.
fn rule(
    policy: &ObjectKey,
    scope: &str,
    i: usize,
    r: &api::RateLimitRule,
) -> Result<(rl::RateLimitRule, bool), Problem> {
    let at = format!("rateLimit.{scope}.rules[{i}]");
    let selectors = r
        .client_selectors
        .iter()
        .enumerate()
        .map(|(j, c)| selector(&format!("{at}.clientSelectors[{j}]"), c))
        .collect::<Result<_, _>>()?;
    let cost = r
        .cost
        .as_ref()
        .and_then(|c| c.request.as_ref())
        .and_then(|c| c.number)
        .unwrap_or(1);
    Ok((
        rl::RateLimitRule {
            id: format!("{policy}/{scope}/{i}"),
            selectors,
            requests: r.limit.requests,
            unit_seconds: unit_seconds(&r.limit.unit)
                .map_err(|p| Problem::new(p.reason, format!("{at}.{}", p.message)))?,
            cost,
            shadow: r.shadow_mode.unwrap_or(false),
        },
        r.shared.unwrap_or(false),
    ))
}

/// A policy's rules, each with whether it is shared.
struct Resolved {
    policy: String,
    local: Vec<(rl::RateLimitRule, bool)>,
    global: Vec<(rl::RateLimitRule, bool)>,
    backend: Option<Arc<rl::BackendTraffic>>,
    retry: Option<ir::Retry>,
    per_try_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    /// What applies to a TCPRoute, and the fields set that do not.
    tcp: Option<Arc<rl::TcpTraffic>>,
    tcp_ignored: Vec<String>,
    invalid: bool,
}

fn backend(
    input: &Input<'_>,
    ns: &str,
    policy: &str,
    s: &api::BackendTrafficPolicySpec,
) -> Result<Option<rl::BackendTraffic>, Problem> {
    let timeouts = connection_timeouts(s.timeout.as_ref())?;
    if s.load_balancer.is_none()
        && s.circuit_breaker.is_none()
        && timeouts.is_none()
        && s.health_check.is_none()
        && s.fault_injection.is_none()
        && s.response_override.is_empty()
        && s.compression.is_empty()
    {
        return Ok(None);
    }
    let load_balancer = match &s.load_balancer {
        None => rl::LoadBalancer::LeastRequest,
        Some(lb) => match lb.lb_type.as_str() {
            "RoundRobin" => rl::LoadBalancer::RoundRobin,
            "Random" => rl::LoadBalancer::Random,
            "ConsistentHash" => {
                let ch = lb.consistent_hash.as_ref().ok_or_else(|| {
                    Problem::new(
                        Reason::Invalid,
                        "loadBalancer.consistentHash: required with type ConsistentHash",
                    )
                })?;
                let on = match ch.hash_type.as_str() {
                    "Header" => rl::HashOn::Header(
                        ch.header
                            .as_ref()
                            .map(|h| h.name.to_ascii_lowercase())
                            .unwrap_or_default(),
                    ),
                    "Cookie" => {
                        let c = ch.cookie.clone().unwrap_or_default();
                        rl::HashOn::Cookie {
                            ttl_seconds: c
                                .ttl
                                .as_deref()
                                .map(|t| ms("loadBalancer.consistentHash.cookie.ttl", Some(t), 0))
                                .transpose()?
                                .map(|m| m / 1000),
                            name: c.name,
                        }
                    }
                    _ => rl::HashOn::SourceIp,
                };
                let table_size = ch.table_size.unwrap_or(65_537);
                if table_size < 2
                    || (2..table_size)
                        .take_while(|d| d * d <= table_size)
                        .any(|d| table_size % d == 0)
                {
                    return Err(Problem::new(
                        Reason::Invalid,
                        format!(
                            "loadBalancer.consistentHash.tableSize: {table_size} is not a prime"
                        ),
                    ));
                }
                rl::LoadBalancer::ConsistentHash { on, table_size }
            }
            _ => rl::LoadBalancer::LeastRequest,
        },
    };
    let slow_start_window_ms = match s.load_balancer.as_ref().and_then(|l| l.slow_start.as_ref()) {
        None => None,
        Some(w) => match ms("loadBalancer.slowStart.window", Some(&w.window), 0)? {
            0 => {
                return Err(Problem::new(
                    Reason::Invalid,
                    "loadBalancer.slowStart.window: must be above zero",
                ));
            }
            w => Some(w),
        },
    };
    let outlier = match s.health_check.as_ref().and_then(|h| h.passive.as_ref()) {
        None => None,
        Some(p) => Some(rl::Outlier {
            split_local_origin: p.split_external_local_origin_errors.unwrap_or(false),
            interval_ms: ms("healthCheck.passive.interval", p.interval.as_deref(), 3_000)?.max(1),
            consecutive_local_origin: p.consecutive_local_origin_failures.unwrap_or(5),
            consecutive_gateway: p.consecutive_gateway_errors.unwrap_or(0),
            consecutive_5xx: p.consecutive_5xx_errors.unwrap_or(5),
            base_ejection_ms: ms(
                "healthCheck.passive.baseEjectionTime",
                p.base_ejection_time.as_deref(),
                30_000,
            )?,
            max_ejection_percent: p.max_ejection_percent.unwrap_or(10).min(100),
        }),
    };
    let active = match s.health_check.as_ref().and_then(|h| h.active.as_ref()) {
        None => None,
        Some(a) => Some(active(a)?),
    };
    Ok(Some(rl::BackendTraffic {
        fault: s.fault_injection.as_ref().map(fault).transpose()?,
        overrides: overrides(input, ns, &s.response_override)?,
        compression: (!s.compression.is_empty()).then(|| rl::Compression {
            algorithms: s
                .compression
                .iter()
                .map(|c| match c.compressor_type.as_str() {
                    "Brotli" => rl::Compressor::Brotli,
                    "Zstd" => rl::Compressor::Zstd,
                    _ => rl::Compressor::Gzip,
                })
                .collect(),
            min_content_length: s
                .compression
                .iter()
                .filter_map(|c| c.min_content_length)
                .min()
                .unwrap_or(30),
        }),
        active,
        policy: policy.to_string(),
        load_balancer,
        slow_start_window_ms,
        zone_aware: s
            .load_balancer
            .as_ref()
            .and_then(|l| l.zone_aware.as_ref())
            .and_then(|z| z.prefer_local.as_ref())
            .map(|p| rl::ZoneAware {
                min_endpoints: p.min_endpoints_threshold.unwrap_or(6),
                percentage: p.percentage_enabled.unwrap_or(100).min(100),
                force_min_in_zone: p
                    .force
                    .as_ref()
                    .map(|f| f.min_endpoints_in_zone_threshold.unwrap_or(1)),
            }),
        circuit_breaker: s.circuit_breaker.as_ref().map(|c| rl::CircuitBreaker {
            max_parallel_requests: c.max_parallel_requests.unwrap_or(1024).max(1),
            max_parallel_retries: c.max_parallel_retries.unwrap_or(1024),
            max_connections: c.max_connections.unwrap_or(1024),
            max_pending_requests: c.max_pending_requests.unwrap_or(1024),
            max_requests_per_connection: c.max_requests_per_connection.unwrap_or(0),
        }),
        timeouts,
        outlier,
    }))
}

fn retry(r: &api::Retry) -> Result<(ir::Retry, Option<u64>), Problem> {
    let triggers: Vec<&str> = r
        .retry_on
        .as_ref()
        .map(|o| o.triggers.iter().map(String::as_str).collect())
        .unwrap_or_else(|| vec!["connect-failure", "retriable-status-codes"]);
    let mut codes: Vec<u16> = vec![];
    for t in &triggers {
        match *t {
            "5xx" => codes.extend(500..=599),
            "gateway-error" => codes.extend([502, 503, 504]),
            "retriable-status-codes" => match r.retry_on.as_ref() {
                Some(o) if !o.http_status_codes.is_empty() => codes.extend(&o.http_status_codes),
                _ => codes.push(503),
            },
            _ => {}
        }
    }
    codes.sort_unstable();
    codes.dedup();
    let back = r.per_retry.as_ref().and_then(|p| p.back_off.as_ref());
    let base = back
        .map(|b| {
            ms(
                "retry.perRetry.backOff.baseInterval",
                b.base_interval.as_deref(),
                25,
            )
        })
        .transpose()?;
    let max = back
        .map(|b| {
            ms(
                "retry.perRetry.backOff.maxInterval",
                b.max_interval.as_deref(),
                base.unwrap_or(25).saturating_mul(10),
            )
        })
        .transpose()?;
    let per_try = r
        .per_retry
        .as_ref()
        .and_then(|p| p.timeout.as_deref())
        .map(|t| ms("retry.perRetry.timeout", Some(t), 0))
        .transpose()?
        .filter(|m| *m > 0);
    Ok((
        ir::Retry {
            codes,
            attempts: r.num_retries.unwrap_or(2),
            backoff_ms: Some(base.unwrap_or(25)),
            max_backoff_ms: Some(max.unwrap_or(250)),
            on_reset: triggers.contains(&"reset"),
            on_connect_failure: triggers.contains(&"connect-failure"),
        },
        per_try,
    ))
}

fn build(
    input: &Input<'_>,
    key: &ObjectKey,
    s: &api::BackendTrafficPolicySpec,
) -> Result<Resolved, Problem> {
    let (retry, per_try_timeout_ms) = match &s.retry {
        Some(r) => {
            let (r, t) = retry(r)?;
            (Some(r), t)
        }
        None => (None, None),
    };
    let (tcp, tcp_ignored) = tcp(&key.to_string(), s)?;
    let mut out = Resolved {
        tcp: tcp.map(Arc::new),
        tcp_ignored,
        policy: key.to_string(),
        local: vec![],
        global: vec![],
        backend: backend(input, &key.namespace, &key.to_string(), s)?.map(Arc::new),
        retry,
        per_try_timeout_ms,
        request_timeout_ms: s
            .timeout
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .and_then(|h| h.request_timeout.as_deref())
            .map(|t| ms("timeout.http.requestTimeout", Some(t), 0))
            .transpose()?
            .filter(|m| *m > 0),
        invalid: false,
    };
    if let Some(r) = &s.rate_limit {
        for (scope, rules, into) in [
            ("local", &r.local, &mut out.local),
            ("global", &r.global, &mut out.global),
        ] {
            for (i, x) in rules.iter().flat_map(|r| &r.rules).enumerate() {
                into.push(rule(key, scope, i, x)?);
            }
        }
    }
    Ok(out)
}

/// The effective limits of one route rule.
fn for_route_rule(p: &Resolved, meta: &ir::RouteMeta) -> ir::RateLimit {
    let route = format!(
        "{}/{}/{}/{}",
        meta.kind, meta.namespace, meta.name, meta.rule_index
    );
    let place = |rules: &[(rl::RateLimitRule, bool)]| {
        rules
            .iter()
            .map(|(r, shared)| {
                let mut r = r.clone();
                if !shared {
                    r.id = format!("{}@{route}", r.id);
                }
                r
            })
            .collect()
    };
    ir::RateLimit {
        policy: p.policy.clone(),
        local: place(&p.local),
        global: place(&p.global),
    }
}

/// Attach every BackendTrafficPolicy, store the effective limits on each route
/// rule of the IR, and write the policies' statuses.
pub(crate) fn apply(input: &Input<'_>, gws: &mut [GatewayState], statuses: &mut Statuses) {
    if input.snapshot.backend_traffic_policies.is_empty() {
        return;
    }
    let mut resolved: Vec<Resolved> = vec![];
    let mut inputs: Vec<PolicyInput> = vec![];
    let mut keys: Vec<ObjectKey> = vec![];
    for (key, p) in &input.snapshot.backend_traffic_policies {
        let meta = Meta::keyed(&p.metadata, key);
        let (r, invalid) = match build(input, key, &p.spec) {
            Ok(r) => (r, None),
            Err(problem) => (
                Resolved {
                    policy: key.to_string(),
                    local: vec![],
                    global: vec![],
                    backend: None,
                    retry: None,
                    per_try_timeout_ms: None,
                    request_timeout_ms: None,
                    tcp: None,
                    tcp_ignored: vec![],
                    invalid: true,
                },
                Some(problem),
            ),
        };
        resolved.push(r);
        inputs.push(PolicyInput {
            meta,
            targets: p.spec.targets().cloned().collect(),
            invalid,
        });
        keys.push(key.clone());
    }
    let mut att = Attachment::new(input, gws, inputs);
    for gw in gws.iter_mut() {
        let gw_key = gw.key.clone();
        for l in gw.listeners.iter_mut() {
            let listener = (l.owner == Owner::Gateway).then(|| l.spec.name.clone());
            for r in l.http_rules.iter_mut() {
                let Some(i) = att.effective(&gw_key, listener.as_deref(), &r.meta) else {
                    continue;
                };
                let p = &resolved[i];
                // Shared with earlier translations: copied on write.
                let r = Arc::make_mut(r);
                if p.invalid {
                    // Fail closed: the rule is answered 500, as an invalid backend.
                    r.action.backends = vec![ir::WeightedBackend {
                        weight: 1,
                        backend: ir::Backend::Invalid {
                            reason: format!("BackendTrafficPolicy {} is invalid", p.policy),
                        },
                        filters: vec![],
                    }];
                    continue;
                }
                if !p.local.is_empty() || !p.global.is_empty() {
                    r.action.rate_limit = Some(Arc::new(for_route_rule(p, &r.meta)));
                }
                r.action.backend_traffic = p.backend.clone();
                // The route's own `retry` and `timeouts` are more specific.
                if r.action.retry.is_none() {
                    r.action.retry = p.retry.clone();
                    if r.action.backend_request_timeout_ms.is_none() {
                        r.action.backend_request_timeout_ms = p.per_try_timeout_ms;
                    }
                }
                if r.action.request_timeout_ms.is_none() {
                    r.action.request_timeout_ms = p.request_timeout_ms;
                }
            }
            // TCPRoutes: the settings that make sense for a TCP proxy; the
            // others are named in the Accepted condition's message.
            for r in l.l4_routes.iter_mut() {
                if r.meta.kind != "TCPRoute" {
                    continue;
                }
                let Some(i) = att.effective(&gw_key, listener.as_deref(), &r.meta) else {
                    continue;
                };
                let p = &resolved[i];
                if p.invalid {
                    // Fail closed: connections are refused, as for an invalid backend.
                    r.backends = vec![ir::WeightedBackend {
                        weight: 1,
                        backend: ir::Backend::Invalid {
                            reason: format!("BackendTrafficPolicy {} is invalid", p.policy),
                        },
                        filters: vec![],
                    }];
                    continue;
                }
                r.traffic = p.tcp.clone();
                if !p.tcp_ignored.is_empty() {
                    let note = format!(
                        "not applied to TCPRoute {}/{} (HTTP only): {}",
                        r.meta.namespace,
                        r.meta.name,
                        p.tcp_ignored.join(", ")
                    );
                    att.note(i, &gw_key, note);
                }
            }
        }
    }
    for (i, ancestors) in att.statuses(&input.options.controller_name) {
        statuses.insert(
            ObjectRef {
                kind: Kind::BackendTrafficPolicy,
                key: keys[i].clone(),
            },
            Status::Policy { ancestors },
        );
    }
}
