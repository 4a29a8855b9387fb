//! BackendTrafficPolicy fields resolved one by one for [`crate::traffic`]:
//! durations and shares, fault injection, response overrides, active health
//! checks, upstream connection timeouts, and what applies to a TCPRoute.

use portcullis_ir::traffic as rl;
use portcullis_store::traffic as api;

use crate::Input;
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::routes::duration_ms;

pub(crate) fn ms(at: &str, d: Option<&str>, default: u64) -> Result<u64, Problem> {
    match d {
        None => Ok(default),
        Some(d) => duration_ms(d)
            .ok_or_else(|| Problem::new(Reason::Invalid, format!("{at}: {d:?} is not a duration"))),
    }
}

/// Millionths of a percentage (`None`: 100 %).
pub(crate) fn share(at: &str, p: Option<f64>) -> Result<u32, Problem> {
    match p {
        None => Ok(1_000_000),
        Some(p) if (0.0..=100.0).contains(&p) => Ok((p * 10_000.0).round() as u32),
        Some(p) => Err(Problem::new(
            Reason::Invalid,
            format!("{at}: {p} is not a percentage"),
        )),
    }
}

pub(crate) fn fault(f: &api::FaultInjection) -> Result<rl::Fault, Problem> {
    Ok(rl::Fault {
        delay: f
            .delay
            .as_ref()
            .map(|d| {
                Ok::<_, Problem>((
                    ms("faultInjection.delay.fixedDelay", Some(&d.fixed_delay), 0)?,
                    share("faultInjection.delay.percentage", d.percentage)?,
                ))
            })
            .transpose()?,
        abort: f
            .abort
            .as_ref()
            .map(|a| {
                Ok::<_, Problem>((
                    a.http_status.unwrap_or(503),
                    a.grpc_status,
                    share("faultInjection.abort.percentage", a.percentage)?,
                ))
            })
            .transpose()?,
    })
}

pub(crate) fn overrides(
    input: &Input<'_>,
    ns: &str,
    list: &[api::ResponseOverride],
) -> Result<Vec<rl::ResponseOverride>, Problem> {
    let mut out = vec![];
    for (i, o) in list.iter().enumerate() {
        let at = format!("responseOverride[{i}]");
        let statuses = o
            .matches
            .status_codes
            .iter()
            .map(|m| {
                match (
                    m.match_type.as_deref().unwrap_or("Value"),
                    m.value,
                    &m.range,
                ) {
                    ("Range", _, Some(r)) => (r.start, r.end),
                    (_, Some(v), _) => (v, v),
                    _ => (0, 0),
                }
            })
            .collect();
        let body = match &o.response.body {
            None => None,
            Some(b) => match (
                b.body_type.as_deref().unwrap_or("Inline"),
                &b.inline,
                &b.value_ref,
            ) {
                ("ValueRef", _, Some(r)) => {
                    let key = portcullis_store::ObjectKey::new(ns.to_string(), r.name.clone());
                    let cm = input.snapshot.config_maps.get(&key).ok_or_else(|| {
                        Problem::new(
                            Reason::Invalid,
                            format!("{at}.response.body.valueRef: ConfigMap {key} does not exist"),
                        )
                    })?;
                    Some(
                        cm.data
                            .as_ref()
                            .and_then(|d| d.get("response.body"))
                            .cloned()
                            .ok_or_else(|| {
                                Problem::new(
                                    Reason::Invalid,
                                    format!("{at}.response.body.valueRef: ConfigMap {key} has no key response.body"),
                                )
                            })?,
                    )
                }
                (_, Some(s), _) => Some(s.clone()),
                _ => None,
            },
        };
        out.push(rl::ResponseOverride {
            statuses,
            content_type: o.response.content_type.clone(),
            body,
            status: o.response.status_code,
        });
    }
    Ok(out)
}

/// `timeout.tcp.connectTimeout`, `timeout.http.connectionIdleTimeout` and
/// `maxConnectionDuration`; `None` when none is set. A zero duration is
/// `Invalid` (a connection that may never be made or kept is a mistake).
pub(crate) fn connection_timeouts(
    t: Option<&api::Timeout>,
) -> Result<Option<rl::ConnectionTimeouts>, Problem> {
    let Some(t) = t else { return Ok(None) };
    let one = |at: &str, d: Option<&String>| -> Result<Option<u64>, Problem> {
        match d {
            None => Ok(None),
            Some(d) => match ms(at, Some(d), 0)? {
                0 => Err(Problem::new(
                    Reason::Invalid,
                    format!("{at}: must be above zero"),
                )),
                v => Ok(Some(v)),
            },
        }
    };
    let http = t.http.as_ref();
    let out = rl::ConnectionTimeouts {
        connect_ms: one(
            "timeout.tcp.connectTimeout",
            t.tcp.as_ref().and_then(|c| c.connect_timeout.as_ref()),
        )?,
        idle_ms: one(
            "timeout.http.connectionIdleTimeout",
            http.and_then(|h| h.connection_idle_timeout.as_ref()),
        )?,
        max_duration_ms: one(
            "timeout.http.maxConnectionDuration",
            http.and_then(|h| h.max_connection_duration.as_ref()),
        )?,
    };
    Ok((out != rl::ConnectionTimeouts::default()).then_some(out))
}

pub(crate) fn payload(at: &str, p: &api::HealthCheckPayload) -> Result<Vec<u8>, Problem> {
    use base64::Engine as _;
    match (p.payload_type.as_str(), &p.text, &p.binary) {
        ("Text", Some(t), _) => Ok(t.as_bytes().to_vec()),
        ("Binary", _, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| Problem::new(Reason::Invalid, format!("{at}.binary: not base64: {e}"))),
        (t, _, _) => Err(Problem::new(
            Reason::Invalid,
            format!("{at}: type {t} needs its {} field", t.to_ascii_lowercase()),
        )),
    }
}

pub(crate) fn active(a: &api::ActiveHealthCheck) -> Result<rl::ActiveHealth, Problem> {
    let at = "healthCheck.active";
    let check = match a.check_type.as_str() {
        "TCP" => {
            let t = a.tcp.clone().unwrap_or_default();
            rl::Check::Tcp {
                send: t
                    .send
                    .as_ref()
                    .map(|p| payload(&format!("{at}.tcp.send"), p))
                    .transpose()?,
                receive: t
                    .receive
                    .as_ref()
                    .map(|p| payload(&format!("{at}.tcp.receive"), p))
                    .transpose()?,
            }
        }
        _ => {
            let h = a.http.clone().ok_or_else(|| {
                Problem::new(
                    Reason::Invalid,
                    format!("{at}.http: required with type HTTP"),
                )
            })?;
            rl::Check::Http {
                hostname: h.hostname.clone(),
                method: h.method.clone().unwrap_or_else(|| "GET".into()),
                expected_statuses: if h.expected_statuses.is_empty() {
                    vec![200]
                } else {
                    h.expected_statuses.clone()
                },
                expected_body: h
                    .expected_response
                    .as_ref()
                    .map(|p| payload(&format!("{at}.http.expectedResponse"), p))
                    .transpose()?,
                path: h.path,
            }
        }
    };
    Ok(rl::ActiveHealth {
        timeout_ms: ms(&format!("{at}.timeout"), a.timeout.as_deref(), 1_000)?.max(1),
        interval_ms: ms(&format!("{at}.interval"), a.interval.as_deref(), 3_000)?.max(1),
        unhealthy_threshold: a.unhealthy_threshold.unwrap_or(3).max(1),
        healthy_threshold: a.healthy_threshold.unwrap_or(1).max(1),
        check,
    })
}

/// The settings of a policy that apply to a TCPRoute
/// (`timeout.tcp.connectTimeout`, `circuitBreaker.maxConnections`,
/// `loadBalancer.type` `RoundRobin`/`Random`; `None` when it sets none of
/// them), and the fields it sets that do not apply to TCP.
pub(crate) fn tcp(
    policy: &str,
    s: &api::BackendTrafficPolicySpec,
) -> Result<(Option<rl::TcpTraffic>, Vec<String>), Problem> {
    let mut ignored: Vec<String> = vec![];
    let mut not = |set: bool, what: &str| {
        if set {
            ignored.push(what.to_string());
        }
    };
    not(s.rate_limit.is_some(), "rateLimit");
    not(s.retry.is_some(), "retry");
    not(
        s.timeout.as_ref().is_some_and(|t| t.http.is_some()),
        "timeout.http",
    );
    not(s.health_check.is_some(), "healthCheck");
    not(s.fault_injection.is_some(), "faultInjection");
    not(!s.response_override.is_empty(), "responseOverride");
    not(!s.compression.is_empty(), "compression");
    if let Some(c) = &s.circuit_breaker {
        // Values other than the defaults the schema fills in.
        not(
            c.max_parallel_requests.is_some_and(|v| v != 1024),
            "circuitBreaker.maxParallelRequests",
        );
        not(
            c.max_parallel_retries.is_some_and(|v| v != 1024),
            "circuitBreaker.maxParallelRetries",
        );
        not(
            c.max_pending_requests.is_some_and(|v| v != 1024),
            "circuitBreaker.maxPendingRequests",
        );
        not(
            c.max_requests_per_connection.is_some(),
            "circuitBreaker.maxRequestsPerConnection",
        );
    }
    let mut round_robin = false;
    if let Some(lb) = &s.load_balancer {
        match lb.lb_type.as_str() {
            "RoundRobin" => round_robin = true,
            "Random" => {}
            other => not(true, &format!("loadBalancer.type {other}")),
        }
        not(lb.slow_start.is_some(), "loadBalancer.slowStart");
        not(lb.zone_aware.is_some(), "loadBalancer.zoneAware");
    }
    let connect_timeout_ms = connection_timeouts(s.timeout.as_ref())?.and_then(|t| t.connect_ms);
    let max_connections = s
        .circuit_breaker
        .as_ref()
        .map(|c| c.max_connections.unwrap_or(1024));
    let t = rl::TcpTraffic {
        policy: policy.to_string(),
        connect_timeout_ms,
        max_connections,
        round_robin,
    };
    let any =
        connect_timeout_ms.is_some() || max_connections.is_some() || s.load_balancer.is_some();
    Ok((any.then_some(t), ignored))
}
