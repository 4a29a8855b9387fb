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

/// An OTLP/gRPC receiver (h2c, hyper + prost): every `TraceService/Export`
/// call decoded; answers `grpc-status: 0` in the trailers. With `stall`, it
/// accepts calls and never answers.
async fn grpc_receiver(
    stall: bool,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>, Arc<Mutex<u32>>) {
    grpc_receiver_tls(stall, None).await
}

/// [`grpc_receiver`], over TLS when `tls` is given (the client must offer
/// ALPN `h2`, which the server config insists on).
async fn grpc_receiver_tls(
    stall: bool,
    tls: Option<Arc<portcullis_tls::rustls::ServerConfig>>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>, Arc<Mutex<u32>>) {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper_util::rt::TokioExecutor;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let calls: Arc<Mutex<u32>> = Arc::default();
    let (got, n) = (spans.clone(), calls.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tls = tls.clone();
            let (got, n) = (got.clone(), n.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (got, n) = (got.clone(), n.clone());
                    async move {
                        assert_eq!(
                            req.uri().path(),
                            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                        );
                        assert_eq!(req.version(), hyper::Version::HTTP_2);
                        assert_eq!(req.headers()["content-type"], "application/grpc");
                        assert_eq!(req.headers()["te"], "trailers");
                        *n.lock().unwrap() += 1;
                        if stall {
                            std::future::pending::<()>().await;
                        }
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        // One uncompressed message: flag 0, big-endian length, message.
                        assert_eq!(body[0], 0, "uncompressed");
                        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
                        assert_eq!(len, body.len() - 5);
                        let msg = ExportTraceServiceRequest::decode(&body[5..]).unwrap();
                        for rs in msg.resource_spans {
                            for ss in rs.scope_spans {
                                got.lock().unwrap().extend(ss.spans);
                            }
                        }
                        // ExportTraceServiceResponse {} is an empty message.
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                            Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
                            Ok(Frame::trailers(trailers)),
                        ];
                        let r = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(futures_util::stream::iter(frames)))
                            .unwrap();
                        Ok::<_, Infallible>(r)
                    }
                });
                let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match tls {
                    Some(cfg) => {
                        let acceptor = portcullis_tls::tokio_rustls::TlsAcceptor::from(cfg);
                        let Ok(t) = acceptor.accept(s).await else {
                            return;
                        };
                        assert_eq!(t.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                        let _ = h2.serve_connection(TokioIo::new(t), svc).await;
                    }
                    None => {
                        let _ = h2.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            });
        }
    });
    (addr, spans, calls)
}

/// OTLP/gRPC export, and B3 (single and multi headers) read from requests
/// and written upstream next to `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_otlp_grpc_with_b3_propagation() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (otlp, spans, _) = grpc_receiver(false).await;
        portcullis_obs::trace::install(
            &portcullis_obs::trace::Config {
                endpoint: format!("grpc://{otlp}"),
                protocol: portcullis_obs::trace::ExportProtocol::Grpc,
                propagation: "tracecontext,b3,b3multi".parse().unwrap(),
                ratio: 1.0,
                delay: Duration::from_millis(50),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let e = Echo::start("b3-echo").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-b3/http",
                None,
                vec![rule("b3", prefix("/b"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        // B3 single header, sampled: the upstream continues the trace in
        // every format, with the gateway's span as the parent.
        let (t1, s1) = ("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1");
        let b3 = format!("{t1}-{s1}-1-05e3ac9a4f6e3b90");
        let got = send(
            &c,
            addr,
            "GET",
            "b.example",
            "/b/single",
            &[("b3", b3.as_str())],
        )
        .await;
        assert_eq!(got.status, 200);
        let up_b3 = got.echoed("b3").expect("b3 upstream");
        let p: Vec<&str> = up_b3.split('-').collect();
        assert_eq!((p[0], p[2], p.len()), (t1, "1", 3), "{up_b3}");
        let gw_span1 = p[1].to_owned();
        assert_ne!(gw_span1, s1, "the gateway's own span");
        let tp = got.echoed("traceparent").expect("traceparent upstream");
        assert_eq!(tp, format!("00-{t1}-{gw_span1}-01"));
        assert_eq!(got.echoed("x-b3-traceid").as_deref(), Some(t1));
        assert_eq!(
            got.echoed("x-b3-spanid").as_deref(),
            Some(gw_span1.as_str())
        );
        assert_eq!(got.echoed("x-b3-sampled").as_deref(), Some("1"));

        // B3 multi headers with a 64-bit trace id.
        let (t2, s2) = ("a3ce929d0e0e4736", "00f067aa0ba902b7");
        let got = send(
            &c,
            addr,
            "GET",
            "b.example",
            "/b/multi",
            &[
                ("x-b3-traceid", t2),
                ("x-b3-spanid", s2),
                ("x-b3-sampled", "1"),
            ],
        )
        .await;
        assert_eq!(got.status, 200);
        let t2_full = format!("{:0>32}", t2);
        assert_eq!(
            got.echoed("x-b3-traceid").as_deref(),
            Some(t2_full.as_str())
        );
        let gw_span2 = got.echoed("x-b3-spanid").unwrap();
        assert_ne!(gw_span2, s2);

        // B3 not sampled: followed (no span exported), and said upstream.
        let (t3, s3) = ("11111111111111112222222222222222", "3333333333333333");
        let got = send(
            &c,
            addr,
            "GET",
            "b.example",
            "/b/unsampled",
            &[("b3", &format!("{t3}-{s3}-0"))],
        )
        .await;
        assert_eq!(got.status, 200);
        let up = got.echoed("b3").unwrap();
        assert!(up.starts_with(t3) && up.ends_with("-0"), "{up}");
        assert!(got.echoed("traceparent").unwrap().ends_with("-00"));

        let mut found = Vec::new();
        for _ in 0..250 {
            found = spans.lock().unwrap().clone();
            if found.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let by_trace = |t: &str| found.iter().find(|s| hex(&s.trace_id) == t).cloned();
        let s = by_trace(t1).unwrap_or_else(|| panic!("the b3 span over gRPC: {found:?}"));
        assert_eq!(hex(&s.parent_span_id), s1);
        assert_eq!(hex(&s.span_id), gw_span1);
        assert_eq!(s.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(s.name, "GET ns/b3");
        assert_eq!(attr(&s, "url.path").as_deref(), Some("/b/single"));
        assert_eq!(attr(&s, "portcullis.route").as_deref(), Some("ns/b3"));
        let m = by_trace(&t2_full).expect("the b3multi span");
        assert_eq!(
            (hex(&m.parent_span_id), hex(&m.span_id)),
            (s2.to_owned(), gw_span2)
        );
        // Give a late batch the time to arrive: the unsampled one never does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        portcullis_obs::trace::flush();
        assert!(
            spans.lock().unwrap().iter().all(|s| hex(&s.trace_id) != t3),
            "an unsampled B3 parent is not exported"
        );
    })
    .await
    .expect("test timed out");
}

/// A collector that accepts calls and never answers costs the requests
/// nothing: they are answered while exports hang; the spans past the queue
/// are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_grpc_collector_never_delays_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (otlp, _, calls) = grpc_receiver(true).await;
        portcullis_obs::trace::install(
            &portcullis_obs::trace::Config {
                endpoint: format!("grpc://{otlp}"),
                protocol: portcullis_obs::trace::ExportProtocol::Grpc,
                ratio: 1.0,
                max_queue: 8,
                delay: Duration::from_millis(20),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let e = Echo::start("stall-echo").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-s/http",
                None,
                vec![rule("s", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        // The first export is in flight (and hangs) before the load starts.
        assert_eq!(
            send(&c, addr, "GET", "s.example", "/first", &[])
                .await
                .status,
            200
        );
        for _ in 0..250 {
            if *calls.lock().unwrap() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*calls.lock().unwrap(), 1, "one export call, hanging");
        let dropped0 = portcullis_obs::metrics().spans_dropped.get();
        let started = std::time::Instant::now();
        for i in 0..100 {
            let got = send(&c, addr, "GET", "s.example", &format!("/{i}"), &[]).await;
            assert_eq!(got.status, 200);
        }
        let took = started.elapsed();
        // 100 requests over loopback; the hung export would hold each for
        // its 10 s timeout if the request path waited on it.
        assert!(took < Duration::from_secs(8), "100 requests took {took:?}");
        let dropped = portcullis_obs::metrics().spans_dropped.get() - dropped0;
        // At most 8 wait in the queue; should the hung call time out
        // meanwhile, its span is counted and 8 more leave the queue.
        assert!(dropped >= 100 - 16, "dropped {dropped}");
        assert!(dropped <= 101, "dropped {dropped}");
    })
    .await
    .expect("test timed out");
}

/// Sampling is parent-based: with a ratio of 0 no new trace is exported,
/// yet its context goes upstream (unsampled); a sampled parent is followed
/// and its span exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_ratio_samples_no_new_trace_but_follows_sampled_parents() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (otlp, spans) = receiver().await;
        portcullis_obs::trace::install(
            &portcullis_obs::trace::Config {
                endpoint: format!("http://{otlp}/v1/traces"),
                ratio: 0.0,
                delay: Duration::from_millis(50),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let e = Echo::start("ratio-echo").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-r/http",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        for i in 0..20 {
            let got = send(&c, addr, "GET", "r.example", &format!("/new/{i}"), &[]).await;
            let tp = got.echoed("traceparent").expect("a traceparent upstream");
            assert!(tp.ends_with("-00"), "not sampled: {tp}");
        }
        let trace = "0af7651916cd43dd8448eb211c80319c";
        let tp = format!("00-{trace}-b7ad6b7169203331-01");
        let got = send(
            &c,
            addr,
            "GET",
            "r.example",
            "/parent",
            &[("traceparent", tp.as_str())],
        )
        .await;
        assert!(got.echoed("traceparent").unwrap().ends_with("-01"));
        for _ in 0..250 {
            if !spans.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Later batches would carry the unsampled ones, if any: wait one more.
        tokio::time::sleep(Duration::from_millis(200)).await;
        portcullis_obs::trace::flush();
        let found = spans.lock().unwrap().clone();
        let ids: Vec<String> = found.iter().map(|s| hex(&s.trace_id)).collect();
        assert_eq!(ids, [trace], "only the sampled parent's span");
    })
    .await
    .expect("test timed out");
}

/// OTLP/gRPC over TLS (`grpcs://`): the collector's certificate checked
/// against the CA file given, ALPN `h2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_over_otlp_grpc_with_tls() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = common::tls::Ca::new("collector ca");
        let leaf = ca.leaf(&["localhost"]);
        let (otlp, spans, _) =
            grpc_receiver_tls(false, Some(common::tls::server_config(&leaf, &[b"h2"]))).await;
        let dir = std::env::temp_dir().join(format!("portcullis-otlp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        portcullis_obs::trace::install(
            &portcullis_obs::trace::Config {
                endpoint: format!("grpcs://localhost:{}", otlp.port()),
                protocol: portcullis_obs::trace::ExportProtocol::Grpc,
                ca_file: Some(ca_file),
                ratio: 1.0,
                delay: Duration::from_millis(50),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let e = Echo::start("tls-echo").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-tls/http",
                None,
                vec![rule("tls", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        let got = send(&c, addr, "GET", "t.example", "/over-tls", &[]).await;
        assert_eq!(got.status, 200);
        let trace = got
            .echoed("traceparent")
            .unwrap()
            .split('-')
            .nth(1)
            .unwrap()
            .to_owned();
        for _ in 0..250 {
            if spans
                .lock()
                .unwrap()
                .iter()
                .any(|s| hex(&s.trace_id) == trace)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let found = spans.lock().unwrap().clone();
        let s = found
            .iter()
            .find(|s| hex(&s.trace_id) == trace)
            .unwrap_or_else(|| panic!("the span over TLS: {found:?}"));
        assert_eq!(attr(s, "url.path").as_deref(), Some("/over-tls"));
    })
    .await
    .expect("test timed out");
}
