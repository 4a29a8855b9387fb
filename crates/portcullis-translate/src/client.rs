//! ClientTrafficPolicy (`portcullis.dev/v1alpha1`): each policy resolved into
//! connection settings ([`ir::ClientConnection`], per socket) and request
//! settings ([`ir::ClientTraffic`], per listener), attached with
//! [`crate::attach`] to Gateways and their own listeners (listener > Gateway,
//! then oldest; two policies on one target: the older applies, the other is
//! `Conflicted`).
//!
//! **Shared sockets.** Listeners on one port share one socket, and what
//! happens before a request is read (PROXY protocol, connection limit,
//! timeouts, HTTP/1 trailers and header case, HTTP/2 and TLS settings) cannot differ between them. The
//! connection settings of a socket are those of its first listener in this
//! order: listeners without a policy (the defaults) first, then by the
//! policy's precedence key. A policy on another listener of that socket whose
//! connection settings differ does not apply to that listener (neither its
//! connection nor its request settings) and is `Accepted=False/Conflicted`
//! on that listener's ancestor, naming the listener that set the socket's
//! settings. Request settings (client address, headers) may differ freely.
//!
//! A policy that cannot be used (a value out of range) is
//! `Accepted=False/Invalid` and still takes its listeners, whose requests are
//! then answered 500 (fail closed), as for the other policy kinds.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use portcullis_ir as ir;
use portcullis_ir::client::{ClientIp, ClientTls, RequestId, Underscores};
use portcullis_store::client as api;
use portcullis_store::status::{Status, Statuses};
use portcullis_store::{Kind, ObjectKey, ObjectRef};

use crate::Input;
use crate::attach::{Attachment, PolicyInput, Precedence};
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::gateway::{GatewayState, Owner, Proto};
use crate::model::Meta;
use crate::routes::duration_ms;

/// Cipher suites rustls (aws-lc-rs) offers: (IANA name, OpenSSL name).
const CIPHERS: [(&str, &str); 9] = [
    ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

fn invalid(message: String) -> Problem {
    Problem::new(Reason::Invalid, message)
}

/// A Kubernetes quantity (`32768`, `32Ki`, `1Mi`, `1Gi`) in bytes.
fn quantity(at: &str, q: &str) -> Result<u64, Problem> {
    let (digits, unit) = match q.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => q.split_at(i),
        None => (q, ""),
    };
    let mult = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(invalid(format!("{at}: {q:?} is not a quantity"))),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("{at}: {q:?} is not a positive quantity")))
}

fn window(at: &str, q: &Option<String>) -> Result<Option<u32>, Problem> {
    let Some(q) = q else { return Ok(None) };
    let n = quantity(at, q)?;
    if !(65_535..=(u32::MAX >> 1) as u64).contains(&n) {
        return Err(invalid(format!(
            "{at}: {q} is outside 65535 to 2147483647 bytes"
        )));
    }
    Ok(Some(n as u32))
}

fn timeout(at: &str, d: &Option<String>) -> Result<Option<u64>, Problem> {
    let Some(d) = d else { return Ok(None) };
    match duration_ms(d) {
        Some(0) => Err(invalid(format!("{at}: must be more than 0"))),
        Some(ms) => Ok(Some(ms)),
        None => Err(invalid(format!("{at}: {d:?} is not a duration"))),
    }
}

fn client_ip(d: &api::ClientIpDetection) -> Result<Option<ClientIp>, Problem> {
    if let Some(x) = &d.x_forwarded_for {
        for c in &x.trusted_cidrs {
            c.parse::<ipnet::IpNet>().map_err(|_| {
                invalid(format!(
                    "clientIPDetection.xForwardedFor.trustedCIDRs: {c:?} is not a CIDR"
                ))
            })?;
        }
        return Ok(Some(ClientIp::XForwardedFor {
            trusted_hops: x.num_trusted_hops.unwrap_or(0),
            trusted_cidrs: x.trusted_cidrs.clone(),
        }));
    }
    Ok(d.custom_header.as_ref().map(|h| ClientIp::CustomHeader {
        name: h.name.to_ascii_lowercase(),
        fail_closed: h.fail_closed.unwrap_or(false),
    }))
}

fn tls(t: &api::ClientTlsSettings) -> Result<ClientTls, Problem> {
    let version = |v: &Option<String>| v.clone().filter(|v| v != "Auto");
    let (min, max) = (version(&t.min_version), version(&t.max_version));
    if min.as_deref() == Some("1.3") && max.as_deref() == Some("1.2") {
        return Err(invalid(
            "tls: minVersion 1.3 is above maxVersion 1.2".into(),
        ));
    }
    let mut ciphers = vec![];
    for c in &t.ciphers {
        let Some((iana, _)) = CIPHERS.iter().find(|(i, o)| c == i || c == o) else {
            return Err(invalid(format!(
                "tls.ciphers: {c:?} is not a supported cipher suite"
            )));
        };
        ciphers.push(iana.to_string());
    }
    Ok(ClientTls {
        min_version: min,
        max_version: max,
        ciphers,
        alpn: t.alpn_protocols.clone(),
    })
}

/// `path`: escaped slashes and slash merging.
fn path(p: &api::PathSettings) -> Result<ir::client::PathSettings, Problem> {
    use ir::client::EscapedSlashes as E;
    let escaped_slashes = match p.escaped_slashes_action.as_deref() {
        None | Some("KeepUnchanged") => E::KeepUnchanged,
        Some("RejectRequest") => E::RejectRequest,
        Some("UnescapeAndRedirect") => E::UnescapeAndRedirect,
        Some("UnescapeAndForward") => E::UnescapeAndForward,
        Some(other) => {
            return Err(invalid(format!(
                "path.escapedSlashesAction: {other:?} is not KeepUnchanged, RejectRequest, UnescapeAndRedirect or UnescapeAndForward"
            )));
        }
    };
    Ok(ir::client::PathSettings {
        escaped_slashes,
        keep_duplicate_slashes: p.disable_merge_slashes.unwrap_or(false),
    })
}

/// A policy's settings: request settings, connection settings.
fn build(key: &ObjectKey, s: &api::ClientTrafficPolicySpec) -> Result<Resolved, Problem> {
    let policy = key.to_string();
    let headers = s.headers.clone().unwrap_or_default();
    let underscores = match headers.with_underscores_action.as_deref() {
        Some("RejectRequest") => Underscores::Reject,
        Some("DropHeader") => Underscores::Drop,
        _ => Underscores::Allow,
    };
    let request_id = match (headers.request_id.as_deref(), headers.preserve_x_request_id) {
        (Some("PreserveOrGenerate"), _) | (None, Some(true)) => RequestId::PreserveOrGenerate,
        (Some("Preserve"), _) => RequestId::Preserve,
        (Some("Generate"), _) | (None, Some(false)) => RequestId::Generate,
        (Some("Disable"), _) => RequestId::Disable,
        _ => RequestId::PassThrough,
    };
    let traffic = ir::ClientTraffic {
        policy: policy.clone(),
        invalid: None,
        client_ip: match &s.client_ip_detection {
            Some(d) => client_ip(d)?,
            None => None,
        },
        underscores,
        request_id,
        path: match &s.path {
            Some(p) => path(p)?,
            None => ir::client::PathSettings::default(),
        },
    };
    let http_t = s
        .timeout
        .as_ref()
        .and_then(|t| t.http.clone())
        .unwrap_or_default();
    let c = s.connection.clone().unwrap_or_default();
    let h2 = s.http2.clone().unwrap_or_default();
    let conn = ir::ClientConnection {
        policy,
        proxy_protocol: s.enable_proxy_protocol.unwrap_or(false),
        request_received_timeout_ms: timeout(
            "timeout.http.requestReceivedTimeout",
            &http_t.request_received_timeout,
        )?,
        idle_timeout_ms: timeout("timeout.http.idleTimeout", &http_t.idle_timeout)?,
        connection_limit: c.connection_limit.map(|l| l.value),
        buffer_limit: match &c.buffer_limit {
            Some(q) => Some(quantity("connection.bufferLimit", q)?),
            None => None,
        },
        h1_trailers: s.http1.as_ref().and_then(|h| h.enable_trailers),
        // `false` is the behaviour without a policy: the same settings.
        h1_preserve_case: s
            .http1
            .as_ref()
            .and_then(|h| h.preserve_header_case)
            .unwrap_or(false),
        h2_max_concurrent_streams: h2.max_concurrent_streams,
        h2_initial_stream_window: window(
            "http2.initialStreamWindowSize",
            &h2.initial_stream_window_size,
        )?,
        h2_initial_connection_window: window(
            "http2.initialConnectionWindowSize",
            &h2.initial_connection_window_size,
        )?,
        tls: s.tls.as_ref().map(tls).transpose()?,
    };
    Ok(Resolved {
        traffic: Arc::new(traffic),
        conn,
    })
}

struct Resolved {
    traffic: Arc<ir::ClientTraffic>,
    conn: ir::ClientConnection,
}

/// One served Gateway listener and the policy that would apply to it.
struct Seat {
    gw: usize,
    listener: usize,
    chosen: Option<(usize, Precedence)>,
}

/// Attach every ClientTrafficPolicy, apply the shared-socket rule, store the
/// settings on the listeners (lowered into the IR), and write the statuses.
pub(crate) fn apply(input: &Input<'_>, gws: &mut [GatewayState], statuses: &mut Statuses) {
    if input.snapshot.client_traffic_policies.is_empty() {
        return;
    }
    let mut resolved: Vec<Resolved> = vec![];
    let mut inputs: Vec<PolicyInput> = vec![];
    let mut keys: Vec<ObjectKey> = vec![];
    for (key, p) in &input.snapshot.client_traffic_policies {
        let meta = Meta::keyed(&p.metadata, key);
        let (r, problem) = match build(key, &p.spec) {
            Ok(r) => (r, None),
            Err(problem) => (
                Resolved {
                    traffic: Arc::new(ir::ClientTraffic {
                        policy: key.to_string(),
                        invalid: Some(format!(
                            "ClientTrafficPolicy {key} is invalid: {}",
                            problem.message
                        )),
                        ..Default::default()
                    }),
                    conn: ir::ClientConnection {
                        policy: key.to_string(),
                        ..Default::default()
                    },
                },
                Some(problem),
            ),
        };
        resolved.push(r);
        inputs.push(PolicyInput {
            meta,
            targets: p.spec.targets().cloned().collect(),
            invalid: problem,
        });
        keys.push(key.clone());
    }
    let mut att = Attachment::new(input, gws, inputs);
    // Every served listener of an accepted Gateway, by socket.
    let mut sockets: BTreeMap<(IpAddr, i32), Vec<Seat>> = BTreeMap::new();
    for (g, gw) in gws.iter().enumerate() {
        let Ok(ip) = gw.address else { continue };
        if gw.params_problem.is_some() {
            continue;
        }
        for (i, l) in gw.listeners.iter().enumerate() {
            if !l.programmed() || !matches!(l.protocol, Some(Proto::Http | Proto::Https)) {
                continue;
            }
            let chosen = match l.owner {
                Owner::Gateway => att.effective_listener(&gw.key, &l.spec.name),
                Owner::ListenerSet(_) => None,
            };
            sockets.entry((ip, l.spec.port)).or_default().push(Seat {
                gw: g,
                listener: i,
                chosen,
            });
        }
    }
    for ((_, port), mut seats) in sockets {
        // Listeners without a policy first, then by precedence.
        seats.sort_by(|a, b| {
            let key = |s: &Seat| s.chosen.as_ref().map(|(_, p)| p.clone());
            key(a).cmp(&key(b))
        });
        let settings = |s: &Seat| match &s.chosen {
            None => ir::ClientConnection::default(),
            Some((i, _)) => resolved[*i].conn.settings(),
        };
        let winner = settings(&seats[0]);
        let first = &seats[0];
        let first_name = format!(
            "{}/{}",
            gws[first.gw].key, gws[first.gw].listeners[first.listener].spec.name
        );
        let why = match &first.chosen {
            None => format!(
                "listener {first_name} shares port {port} without a policy: connection settings \
                 (PROXY protocol, connection limit, timeouts, HTTP/1 trailers and header case, HTTP/2, TLS) must be the same for \
                 every listener on a port"
            ),
            Some((i, _)) => format!(
                "listener {first_name} shares port {port} with the connection settings of {}: \
                 connection settings (PROXY protocol, connection limit, timeouts, HTTP/1 trailers and header case, HTTP/2, TLS) \
                 must be the same for every listener on a port",
                keys[*i]
            ),
        };
        let port_conn = match &first.chosen {
            Some((i, _)) if winner != ir::ClientConnection::default() => {
                Some(resolved[*i].conn.clone())
            }
            _ => None,
        };
        for s in &seats {
            let l_name = gws[s.gw].listeners[s.listener].spec.name.clone();
            let gw_key = gws[s.gw].key.clone();
            let applied = match &s.chosen {
                Some((i, _)) if settings(s) != winner => {
                    att.port_conflict(*i, &gw_key, &l_name, why.clone());
                    None
                }
                Some((i, _)) => Some(resolved[*i].traffic.clone()),
                None => None,
            };
            let l = &mut gws[s.gw].listeners[s.listener];
            l.client = applied;
            l.client_conn = port_conn.clone();
        }
    }
    for (i, ancestors) in att.statuses(&input.options.controller_name) {
        statuses.insert(
            ObjectRef {
                kind: Kind::ClientTrafficPolicy,
                key: keys[i].clone(),
            },
            Status::Policy { ancestors },
        );
    }
}
