//! The proxy's own parser accepts the arguments the controller renders into
//! a provisioned proxy's Deployment (the two are in different crates, so
//! this is where they meet).

use portcullis_kube::provision::{self, Settings, params};
use portcullis_store::types::{ConfigMap, Gateway};
use portcullis_store::{Object, Snapshot};
use serde_json::{Value, json};

fn settings() -> Settings {
    Settings {
        image: "ghcr.io/portcullis-dev/portcullis:0.1.0".into(),
        stream_url: "https://portcullis-controller.portcullis-system.svc:9977".into(),
        log_level: "info".into(),
        enabled: true,
        ca_bundle: "-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n".into(),
    }
}

fn gw(name: &str, spec: Value) -> Gateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "apps", "uid": "0b3c7a9e-1111-2222-3333-444455556666", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn render(gw: &Gateway, snapshot: &Snapshot) -> Result<Vec<Value>, String> {
    let p = params::of(gw, snapshot)?;
    Ok(provision::render(gw, snapshot, &p, &settings()))
}

#[test]
fn traces_and_access_log_from_parameters() {
    let g = gw(
        "observed",
        json!({"gatewayClassName": "portcullis", "infrastructure": {"parametersRef": {"group": "", "kind": "ConfigMap", "name": "obs"}}, "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}),
    );
    let mut snap = Snapshot::default();
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "obs", "namespace": "apps"},
        "data": {"otlpEndpoint": "grpc://otel-collector.observability:4317", "traceSampleRatio": "0.5",
                 "tracePropagation": "tracecontext,b3multi", "accessLog": "text", "accessLogFields": "time,status,route",
                 "metricsEndpointLabels": "true"}
    }))
    .unwrap();
    snap.insert(Object::ConfigMap(cm));
    let objects = render(&g, &snap).unwrap();
    let args: Vec<String> = objects[2]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    // The proxy's own parser accepts what the controller renders (without
    // the subcommand and the global --log-level).
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        a: portcullis_proxy::ProxyArgs,
    }
    let mut proxy_args = vec!["proxy".to_string()];
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--log-level" {
            it.next();
        } else {
            proxy_args.push(a.clone());
        }
    }
    let parsed = <P as clap::Parser>::try_parse_from(&proxy_args)
        .unwrap_or_else(|e| panic!("{proxy_args:?}: {e}"))
        .a;
    assert_eq!(
        parsed.trace.otlp_endpoint.as_deref(),
        Some("grpc://otel-collector.observability:4317")
    );
    assert_eq!(parsed.trace.trace_sample_ratio, 0.5);
    assert!(parsed.limits.metrics_endpoint_labels);
    assert!(parsed.trace.trace_propagation.w3c && parsed.trace.trace_propagation.b3_multi);
    assert!(!parsed.trace.trace_propagation.b3);
    assert_eq!(
        parsed.access_log.access_log,
        Some(portcullis_obs::accesslog::Format::Text)
    );
    assert_eq!(
        parsed.access_log.access_log_fields.map(|f| f.len()),
        Some(3)
    );
    let bad: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "obs", "namespace": "apps"},
        "data": {"otlpEndpoint": "otel:4317"}
    }))
    .unwrap();
    assert!(params::parse(&bad).unwrap_err().contains("otlpEndpoint"));
}
