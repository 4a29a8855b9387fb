//! Traces: a server span per request, W3C trace context in and out, spans
//! received over OTLP/HTTP by a receiver this test runs on 127.0.0.1.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// An OTLP/HTTP receiver: every POSTed `/v1/traces` body, decoded.
async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let got = spans.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let got = got.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        let ctype = req.headers()["content-type"].to_str().unwrap().to_owned();
                        assert_eq!(ctype, "application/x-protobuf");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let msg = ExportTraceServiceRequest::decode(body).unwrap();
                        for rs in msg.resource_spans {
                            for ss in rs.scope_spans {
                                got.lock().unwrap().extend(ss.spans);
                            }
                        }
                        let r = hyper::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s.attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_spans_are_exported_and_context_propagated() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (otlp, spans) = receiver().await;
        portcullis_obs::trace::install(
            &portcullis_obs::trace::Config {
                endpoint: format!("http://{otlp}/v1/traces"),
                ratio: 1.0,
                delay: Duration::from_millis(50),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let e = Echo::start("traced-echo").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-t/http",
                None,
                vec![rule("traced", prefix("/t"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = "00f067aa0ba902b7";
        let tp = format!("00-{trace}-{parent}-01");
        let got = send(
            &c,
            addr,
            "GET",
            "t.example",
            "/t/1?x=1",
            &[
                ("traceparent", tp.as_str()),
                ("tracestate", "vendor=abc"),
                ("user-agent", "ua/1"),
            ],
        )
        .await;
        assert_eq!(got.status, 200);
        // The upstream sees the same trace, with the gateway's span as parent.
        let up = got.echoed("traceparent").expect("traceparent upstream");
        let parts: Vec<&str> = up.split('-').collect();
        assert_eq!(parts[1], trace, "{up}");
        assert_ne!(parts[2], parent, "{up}");
        assert_eq!(parts[3], "01", "{up}");
        assert_eq!(got.echoed("tracestate").as_deref(), Some("vendor=abc"));
        // Without a traceparent the gateway starts a trace.
        let fresh = send(&c, addr, "POST", "t.example", "/t/2", &[]).await;
        let fresh_tp = fresh.echoed("traceparent").expect("a new traceparent");
        assert_eq!(fresh_tp.len(), 55, "{fresh_tp}");
        // No route: a span too, with the error status code.
        assert_eq!(
            send(&c, addr, "GET", "t.example", "/none", &[])
                .await
                .status,
            404
        );

        let mut found = Vec::new();
        for _ in 0..250 {
            found = spans.lock().unwrap().clone();
            if found.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(found.len() >= 3, "spans received: {found:?}");
        let s = found
            .iter()
            .find(|s| hex(&s.trace_id) == trace)
            .expect("the span of the traced request");
        assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(s.name, "GET ns/traced");
        assert_eq!(hex(&s.parent_span_id), parent);
        assert_eq!(hex(&s.span_id), parts[2]);
        assert_eq!(attr(s, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(attr(s, "http.response.status_code").as_deref(), Some("200"));
        assert_eq!(attr(s, "url.path").as_deref(), Some("/t/1"));
        assert_eq!(attr(s, "url.scheme").as_deref(), Some("http"));
        assert_eq!(attr(s, "server.address").as_deref(), Some("t.example"));
        assert_eq!(attr(s, "server.port"), Some(addr.port().to_string()));
        assert_eq!(attr(s, "client.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr(s, "network.protocol.version").as_deref(), Some("1.1"));
        assert_eq!(attr(s, "user_agent.original").as_deref(), Some("ua/1"));
        assert_eq!(attr(s, "portcullis.route").as_deref(), Some("ns/traced"));
        assert_eq!(attr(s, "portcullis.gateway").as_deref(), Some("ns/gw-t"));
        assert_eq!(attr(s, "portcullis.listener").as_deref(), Some("http"));
        assert_eq!(
            attr(s, "portcullis.backend").as_deref(),
            Some("ns/traced-echo:80")
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        let fresh_span = found
            .iter()
            .find(|s| hex(&s.trace_id) == fresh_tp.split('-').nth(1).unwrap())
            .expect("the span of the untraced request");
        assert!(fresh_span.parent_span_id.is_empty(), "a root span");
        assert_eq!(
            attr(fresh_span, "http.request.method").as_deref(),
            Some("POST")
        );
        let nr = found
            .iter()
            .find(|s| attr(s, "http.response.status_code").as_deref() == Some("404"))
            .expect("the 404 span");
        assert_eq!(nr.name, "GET");
    })
    .await
    .expect("test timed out");
}
