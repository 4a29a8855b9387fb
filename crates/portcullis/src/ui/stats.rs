//! Per-route HTTP statistics for the dashboard, read from the process-wide
//! registry's own exposition (`portcullis_obs::render`, what `/metrics`
//! serves): no second bookkeeping, and the page shows exactly what
//! Prometheus would scrape.

use std::collections::BTreeMap;

use serde::Serialize;

/// Cumulative statistics of one (gateway, listener, route) since start.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RouteStats {
    /// `namespace/name` of the Gateway (empty: no listener matched).
    pub gateway: String,
    /// Listener name (empty: no listener matched).
    pub listener: String,
    /// `namespace/name` of the route (empty: no route matched).
    pub route: String,
    /// Requests, every status.
    pub requests: u64,
    /// Requests answered 4xx.
    pub client_errors: u64,
    /// Requests answered 5xx.
    pub server_errors: u64,
    /// Sum of request durations, seconds.
    pub duration_sum: f64,
    /// Requests timed.
    pub duration_count: u64,
}

/// `name{a="x",b="y"} value` → (name, labels, value).
fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, String>, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series, BTreeMap::new(), value));
    };
    let mut labels = BTreeMap::new();
    let mut rest = rest.strip_suffix('}')?;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        // The value ends at the first quote not escaped by a backslash.
        let mut v = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        v.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => v.push(c),
            }
        }
        let end = end?;
        labels.insert(k.trim_start_matches(','), v);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some((name, labels, value))
}

/// Statistics by (gateway, listener, route), from an OpenMetrics text.
pub fn from_exposition(text: &str) -> Vec<RouteStats> {
    let mut by: BTreeMap<(String, String, String), RouteStats> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(parse_line) {
        let field = match name {
            "portcullis_http_requests_total" => 0,
            "portcullis_http_request_duration_seconds_sum" => 1,
            "portcullis_http_request_duration_seconds_count" => 2,
            _ => continue,
        };
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let key = (get("gateway"), get("listener"), get("route"));
        let e = by.entry(key.clone()).or_insert_with(|| RouteStats {
            gateway: key.0,
            listener: key.1,
            route: key.2,
            ..Default::default()
        });
        match field {
            0 => {
                let n = value as u64;
                e.requests += n;
                match labels.get("code").map(String::as_str) {
                    Some("4xx") => e.client_errors += n,
                    Some("5xx") => e.server_errors += n,
                    _ => {}
                }
            }
            1 => e.duration_sum += value,
            _ => e.duration_count += value as u64,
        }
    }
    by.into_values().collect()
}

/// Endpoint health from `portcullis_endpoint_healthy{backend,endpoint}`
/// series (the proxies' exposition in Kubernetes mode, when they run with
/// `--metrics-endpoint-labels`): `(backend, endpoint)` → in service. Several
/// proxies: out of service if any says so.
pub fn endpoint_health(text: &str) -> BTreeMap<(String, std::net::SocketAddr), bool> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("portcullis_endpoint_healthy{"))
    {
        let Some((_, labels, v)) = parse_line(line) else {
            continue;
        };
        let (Some(b), Some(Ok(e))) = (
            labels.get("backend"),
            labels.get("endpoint").map(|e| e.parse()),
        ) else {
            continue;
        };
        let up = out.entry((b.clone(), e)).or_insert(true);
        *up &= v >= 1.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_errors_and_durations_add_up_per_route() {
        let text = r#"# TYPE portcullis_http_requests_total counter
portcullis_http_requests_total{gateway="default/gw",listener="http",route="default/a",backend="default/s:80",method="GET",code="2xx"} 3
portcullis_http_requests_total{gateway="default/gw",listener="http",route="default/a",backend="",method="POST",code="5xx"} 2
portcullis_http_requests_total{gateway="default/gw",listener="http",route="",backend="",method="GET",code="4xx"} 1
portcullis_http_request_duration_seconds_sum{gateway="default/gw",listener="http",route="default/a",backend="default/s:80"} 0.5
portcullis_http_request_duration_seconds_count{gateway="default/gw",listener="http",route="default/a",backend="default/s:80"} 3
portcullis_http_request_duration_seconds_bucket{gateway="default/gw",listener="http",route="default/a",backend="default/s:80",le="0.001"} 1
portcullis_config_applied_generation 4
# EOF
"#;
        let s = from_exposition(text);
        assert_eq!(s.len(), 2, "{s:?}");
        let none = &s[0];
        assert_eq!(
            (none.route.as_str(), none.requests, none.client_errors),
            ("", 1, 1)
        );
        let a = &s[1];
        assert_eq!(a.route, "default/a");
        assert_eq!((a.requests, a.server_errors, a.duration_count), (5, 2, 3));
        assert!((a.duration_sum - 0.5).abs() < 1e-9);
    }

    #[test]
    fn quoted_label_values_are_unescaped() {
        let (_, l, v) = parse_line(r#"m{a="x\"y",b="z"} 7"#).unwrap();
        assert_eq!((l["a"].as_str(), l["b"].as_str(), v), ("x\"y", "z", 7.0));
    }

    #[test]
    fn endpoint_health_is_read_from_the_per_endpoint_series() {
        let text = "portcullis_endpoint_healthy{backend=\"ns/s:80\",endpoint=\"10.0.0.1:8080\"} 1\n\
                    portcullis_endpoint_healthy{backend=\"ns/s:80\",endpoint=\"10.0.0.2:8080\"} 1\n\
                    portcullis_endpoint_healthy{backend=\"ns/s:80\",endpoint=\"10.0.0.2:8080\"} 0\n\
                    portcullis_backend_endpoints{backend=\"ns/s:80\",state=\"healthy\"} 1\n";
        let h = endpoint_health(text);
        assert_eq!(h.len(), 2, "{h:?}");
        let k = |a: &str| ("ns/s:80".to_string(), a.parse().unwrap());
        assert!(h[&k("10.0.0.1:8080")]);
        assert!(!h[&k("10.0.0.2:8080")], "one proxy says out of service");
    }
}
