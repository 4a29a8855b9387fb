//! `spec.infrastructure.parametersRef`: a ConfigMap in the Gateway's namespace.
//!
//! ```yaml
//! data:
//!   replicas: "2"                 # 0..=100
//!   autoscaled: "true"            # an HPA owns replicas (not with `replicas`)
//!   serviceType: NodePort         # ClusterIP | NodePort | LoadBalancer
//!   resources: |                  # requests and/or limits; cpu and/or memory
//!     requests: {cpu: 200m, memory: 128Mi}
//!     limits: {memory: 256Mi}
//!   rateLimitRedisSecret: redis   # a Secret in the Gateway's namespace whose `url` key is
//!                                 # the Redis URL of global rate limits (--rate-limit-redis)
//!   rateLimitRedisCluster: "true" # that URL is a Redis Cluster node
//!   rateLimitFailClosed: "true"   # 503 when Redis cannot decide (default: fail open)
//!   metricsEndpointLabels: "true" # a series per endpoint (--metrics-endpoint-labels)
//!   otlpEndpoint: grpc://otel-collector.observability:4317   # traces (--otlp-endpoint;
//!                                 # grpcs://, https:// over TLS)
//!   otlpProtocol: grpc            # grpc | http/protobuf (default: from the endpoint)
//!   traceSampleRatio: "0.1"       # 0..=1
//!   tracePropagation: tracecontext,b3   # tracecontext, b3, b3multi
//!   accessLog: text               # json (default) | text | off
//!   accessLogFields: time,method,path,status,duration_ms
//! ```
//! Anything else (an unknown key, a bad value, a missing ConfigMap, a ref to
//! another kind) makes the Gateway `Accepted=False` with reason `InvalidParameters`.

use std::collections::BTreeMap;

use portcullis_store::types::{ConfigMap, Gateway};
use portcullis_store::{ObjectKey, Snapshot};
use serde_json::{Value, json};

/// Provisioning parameters of one Gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Proxy replicas.
    pub replicas: i32,
    /// Service type.
    pub service_type: String,
    /// Container `resources`.
    pub resources: Value,
    /// Whether something else (an HPA) sets the replicas: the Deployment is applied without them.
    pub autoscaled: bool,
    /// A Secret (Gateway's namespace) whose `url` key is the global rate limits' Redis.
    pub rate_limit_redis_secret: Option<String>,
    /// That Redis is a Cluster.
    pub rate_limit_redis_cluster: bool,
    /// Global rate limits fail closed.
    pub rate_limit_fail_closed: bool,
    /// The proxy adds a series per endpoint (`--metrics-endpoint-labels`),
    /// which the controller's dashboard reads for endpoint health.
    pub metrics_endpoint_labels: bool,
    /// Observability flags of the proxy (traces, access log), in key order.
    pub observe_args: Vec<String>,
    /// Seconds a proxy keeps serving, unready, after SIGTERM (`--shutdown-delay`).
    pub shutdown_delay: u64,
    /// Seconds a proxy then drains open connections (`--drain-timeout`).
    pub drain_timeout: u64,
}

impl Params {
    /// The pods' `terminationGracePeriodSeconds`: the shutdown delay and the
    /// drain, with 5 s to spare, and never less than Kubernetes' default 30.
    pub fn termination_grace(&self) -> u64 {
        (self.shutdown_delay + self.drain_timeout + 5).max(30)
    }
}

fn seconds(name: &str, key: &str, v: &str) -> Result<u64, String> {
    v.parse().ok().filter(|n| *n <= 600).ok_or_else(|| {
        format!("ConfigMap {name}: {key} must be whole seconds from 0 to 600, not {v:?}")
    })
}

/// Observability keys → `portcullis proxy` flags, each value checked the
/// way the proxy's own parser checks it (so a bad value is an
/// `InvalidParameters` status, not a crash-looping pod).
fn observe_arg(key: &str, v: &str) -> Option<Result<[String; 2], String>> {
    use portcullis_obs::trace::{ExportProtocol, Propagation};
    let flag = match key {
        "otlpEndpoint" => "--otlp-endpoint",
        "otlpProtocol" => "--otlp-protocol",
        "traceSampleRatio" => "--trace-sample-ratio",
        "tracePropagation" => "--trace-propagation",
        "accessLog" => "--access-log",
        "accessLogFields" => "--access-log-fields",
        _ => return None,
    };
    let ok = match key {
        "otlpEndpoint" => {
            let rest = ["http://", "https://", "grpc://", "grpcs://"]
                .iter()
                .find_map(|p| v.strip_prefix(p));
            if rest.is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_graphic()))
                && v.len() <= 2048
            {
                Ok(())
            } else {
                Err("must be an http(s):// (OTLP/HTTP) or grpc(s):// (OTLP/gRPC) URL".to_string())
            }
        }
        "otlpProtocol" => v.parse::<ExportProtocol>().map(|_| ()),
        "traceSampleRatio" => match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(()),
            _ => Err("must be a number from 0 to 1".to_string()),
        },
        "tracePropagation" => v
            .parse::<Propagation>()
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "accessLog" => v.parse::<portcullis_obs::accesslog::Format>().map(|_| ()),
        _ => portcullis_obs::accesslog::parse_fields(v).map(|_| ()),
    };
    Some(
        ok.map(|()| [flag.to_string(), v.to_string()])
            .map_err(|e| format!("{key}: {e}")),
    )
}

fn boolean(name: &str, key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "ConfigMap {name}: {key} must be \"true\" or \"false\", not {v:?}"
        )),
    }
}

impl Default for Params {
    fn default() -> Self {
        Params {
            replicas: 1,
            service_type: "LoadBalancer".into(),
            resources: json!({"requests": {"cpu": "100m", "memory": "64Mi"}}),
            autoscaled: false,
            rate_limit_redis_secret: None,
            rate_limit_redis_cluster: false,
            rate_limit_fail_closed: false,
            metrics_endpoint_labels: false,
            observe_args: vec![],
            shutdown_delay: 5,
            drain_timeout: 10,
        }
    }
}

/// The parameters of a Gateway: defaults without a `parametersRef`, else the
/// referenced ConfigMap's; `Err` carries the `InvalidParameters` message.
pub fn of(gw: &Gateway, snapshot: &Snapshot) -> Result<Params, String> {
    let Some(r) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    else {
        return Ok(Params::default());
    };
    if !(r.group.is_empty() || r.group == "core") || r.kind != "ConfigMap" {
        return Err(format!(
            "parametersRef must be a ConfigMap (group \"\"), not {}/{}",
            r.group, r.kind
        ));
    }
    let ns = gw.metadata.namespace.clone().unwrap_or_default();
    let Some(cm) = snapshot.config_maps.get(&ObjectKey::new(&ns, &r.name)) else {
        return Err(format!(
            "parametersRef: ConfigMap {ns}/{} not found",
            r.name
        ));
    };
    parse(cm)
}

/// Parse the ConfigMap's data.
pub fn parse(cm: &ConfigMap) -> Result<Params, String> {
    let mut p = Params::default();
    let empty = BTreeMap::new();
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    for (k, v) in cm.data.as_ref().unwrap_or(&empty) {
        let v = v.trim();
        match k.as_str() {
            "replicas" => {
                p.replicas = v
                    .parse()
                    .ok()
                    .filter(|n| (0..=100).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "ConfigMap {name}: replicas must be an integer from 0 to 100, not {v:?}"
                        )
                    })?;
            }
            "autoscaled" => {
                p.autoscaled = match v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!(
                            "ConfigMap {name}: autoscaled must be \"true\" or \"false\", not {v:?}"
                        ));
                    }
                }
            }
            "serviceType" => {
                if !matches!(v, "ClusterIP" | "NodePort" | "LoadBalancer") {
                    return Err(format!(
                        "ConfigMap {name}: serviceType must be ClusterIP, NodePort or LoadBalancer, not {v:?}"
                    ));
                }
                p.service_type = v.to_string();
            }
            "rateLimitRedisSecret" => {
                let ok = !v.is_empty()
                    && v.len() <= 253
                    && v.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if !ok {
                    return Err(format!(
                        "ConfigMap {name}: rateLimitRedisSecret must be a Secret name, not {v:?}"
                    ));
                }
                p.rate_limit_redis_secret = Some(v.to_string());
            }
            "rateLimitRedisCluster" => p.rate_limit_redis_cluster = boolean(name, k, v)?,
            "rateLimitFailClosed" => p.rate_limit_fail_closed = boolean(name, k, v)?,
            "metricsEndpointLabels" => p.metrics_endpoint_labels = boolean(name, k, v)?,
            "shutdownDelay" => p.shutdown_delay = seconds(name, k, v)?,
            "drainTimeout" => p.drain_timeout = seconds(name, k, v)?,
            "resources" => {
                p.resources =
                    resources(v).map_err(|e| format!("ConfigMap {name}: resources: {e}"))?
            }
            other => match observe_arg(other, v) {
                Some(Ok(flag)) => p.observe_args.extend(flag),
                Some(Err(e)) => return Err(format!("ConfigMap {name}: {e}")),
                None => {
                    return Err(format!(
                        "ConfigMap {name}: unknown key {other:?} (known: replicas, autoscaled, serviceType, resources, rateLimitRedisSecret, rateLimitRedisCluster, rateLimitFailClosed, metricsEndpointLabels, shutdownDelay, drainTimeout, otlpEndpoint, otlpProtocol, traceSampleRatio, tracePropagation, accessLog, accessLogFields)"
                    ));
                }
            },
        }
    }
    let has_replicas = cm.data.as_ref().is_some_and(|d| d.contains_key("replicas"));
    if p.autoscaled && has_replicas {
        return Err(format!(
            "ConfigMap {name}: replicas and autoscaled: \"true\" exclude each other (the autoscaler sets the replicas)"
        ));
    }
    Ok(p)
}

fn resources(text: &str) -> Result<Value, String> {
    let v: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let Value::Object(m) = &v else {
        return Err("must be a mapping with requests and/or limits".into());
    };
    for (section, body) in m {
        if !matches!(section.as_str(), "requests" | "limits") {
            return Err(format!(
                "unknown field {section:?} (known: requests, limits)"
            ));
        }
        let Value::Object(q) = body else {
            return Err(format!("{section} must be a mapping"));
        };
        for (res, val) in q {
            if !matches!(res.as_str(), "cpu" | "memory") {
                return Err(format!(
                    "{section}: unknown resource {res:?} (known: cpu, memory)"
                ));
            }
            let s = match val {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(format!("{section}.{res} must be a quantity")),
            };
            if !quantity(&s) {
                return Err(format!("{section}.{res}: {s:?} is not a quantity"));
            }
        }
    }
    // Quantities are written back as strings, as the API would return them.
    let mut out = v.clone();
    for q in out
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
        .filter_map(Value::as_object_mut)
    {
        for val in q.values_mut() {
            if let Value::Number(n) = val {
                *val = Value::String(n.to_string());
            }
        }
    }
    Ok(out)
}

/// Kubernetes quantity syntax: a decimal number and an optional suffix.
fn quantity(s: &str) -> bool {
    let suffixes = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    let Some(num) = suffixes.iter().find_map(|suf| s.strip_suffix(suf)) else {
        return false;
    };
    let num = num.strip_prefix('+').unwrap_or(num);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    !(int.is_empty() && frac.is_empty())
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(pairs: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn parses_and_rejects() {
        let p = parse(&cm(&[
            ("replicas", "3"),
            ("serviceType", "NodePort"),
            (
                "resources",
                "requests: {cpu: 250m, memory: 1Gi}\nlimits: {cpu: 1}",
            ),
        ]))
        .expect("valid");
        assert_eq!(p.replicas, 3);
        assert_eq!(p.service_type, "NodePort");
        assert!(!p.autoscaled);
        assert!(parse(&cm(&[("autoscaled", "true")])).unwrap().autoscaled);
        assert_eq!(Params::default().termination_grace(), 30);
        let d = parse(&cm(&[("shutdownDelay", "20"), ("drainTimeout", "30")])).unwrap();
        assert_eq!((d.shutdown_delay, d.drain_timeout), (20, 30));
        assert_eq!(d.termination_grace(), 55);
        let o = parse(&cm(&[
            ("otlpEndpoint", "grpc://otel.observability:4317"),
            ("traceSampleRatio", "0.25"),
            ("tracePropagation", "tracecontext,b3"),
            ("accessLog", "text"),
            ("accessLogFields", "time,status"),
        ]))
        .unwrap();
        assert_eq!(
            o.observe_args,
            [
                "--access-log",
                "text",
                "--access-log-fields",
                "time,status",
                "--otlp-endpoint",
                "grpc://otel.observability:4317",
                "--trace-propagation",
                "tracecontext,b3",
                "--trace-sample-ratio",
                "0.25"
            ]
        );
        assert_eq!(
            p.resources,
            json!({"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1"}})
        );
        for bad in [
            vec![("replicas", "-1")],
            vec![("replicas", "two")],
            vec![("serviceType", "ExternalName")],
            vec![("resources", "requests: {cpu: lots}")],
            vec![("resources", "requests: {gpu: 1}")],
            vec![("resources", "[1, 2]")],
            vec![("replica", "1")],
            vec![("autoscaled", "yes")],
            vec![("autoscaled", "true"), ("replicas", "2")],
            vec![("otlpEndpoint", "ftp://c:4317")],
            vec![("otlpEndpoint", "grpc://")],
            vec![("otlpEndpoint", "grpc://c:4317 --evil")],
            vec![("otlpProtocol", "thrift")],
            vec![("traceSampleRatio", "1.5")],
            vec![("tracePropagation", "zipkin")],
            vec![("accessLog", "xml")],
            vec![("accessLogFields", "time,cookie")],
            vec![("shutdownDelay", "-1")],
            vec![("shutdownDelay", "5s")],
            vec![("drainTimeout", "601")],
        ] {
            assert!(parse(&cm(&bad)).is_err(), "{bad:?} must be rejected");
        }
    }
}
