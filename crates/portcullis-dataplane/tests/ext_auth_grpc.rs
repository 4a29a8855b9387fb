//! External authorization over gRPC (Envoy's `Authorization/Check`) end to
//! end over real sockets: an h2c `Check` server run by the test (hyper +
//! prost) that allows (adding, appending and removing headers), denies with
//! its own status, headers and body, and stalls; `failOpen` on and off;
//! `bodyToExtAuth` over gRPC and HTTP.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_dataplane::auth::ext_authz_pb as pb;
use portcullis_ir::security::*;
use portcullis_ir::*;
use prost::Message;
use tokio::net::TcpListener;

fn hvo(key: &str, value: &str, append: Option<bool>) -> pb::HeaderValueOption {
    pb::HeaderValueOption {
        header: Some(pb::HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: vec![],
        }),
        append: append.map(|value| pb::BoolValue { value }),
        append_action: 0,
    }
}

/// The decision of the test's authorization service for one request.
fn decide(req: &pb::CheckRequest) -> Option<pb::CheckResponse> {
    let http = req.attributes.as_ref()?.request.as_ref()?.http.as_ref()?;
    let auth = http.headers.get("authorization").map(String::as_str);
    if auth == Some("Bearer good") || http.body.contains("let me in") {
        return Some(pb::CheckResponse {
            status: Some(pb::RpcStatus::default()),
            denied_response: None,
            ok_response: Some(pb::OkHttpResponse {
                headers: vec![
                    hvo("x-auth-user", "alice", None),
                    hvo("x-tag", "from-auth", Some(true)),
                    hvo(":path", "/hijacked", None),
                ],
                headers_to_remove: vec!["x-remove-me".into()],
                response_headers_to_add: vec![hvo("x-from-auth", "yes", None)],
            }),
        });
    }
    Some(pb::CheckResponse {
        status: Some(pb::RpcStatus {
            code: 7,
            message: "denied".into(),
        }),
        denied_response: Some(pb::DeniedHttpResponse {
            status: Some(pb::HttpStatus { code: 418 }),
            headers: vec![hvo("x-ext", "denied", None)],
            body: "denied by grpc\n".into(),
        }),
        ok_response: None,
    })
}

/// An h2c `envoy.service.auth.v3.Authorization/Check` server. A request
/// header `x-slow` makes it wait 2 s; `x-broken` answers `grpc-status: 14`.
async fn grpc_auth() -> (
    SocketAddr,
    Arc<Mutex<Vec<(String, pb::CheckRequest)>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<(String, pb::CheckRequest)>>> = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let check = pb::CheckRequest::decode(&body[5..]).unwrap();
                        s.lock().unwrap().push((path, check.clone()));
                        let h = &check
                            .attributes
                            .as_ref()
                            .unwrap()
                            .request
                            .as_ref()
                            .unwrap()
                            .http
                            .as_ref()
                            .unwrap()
                            .headers;
                        if h.contains_key("x-slow") {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let mut trailers = ::http::HeaderMap::new();
                        let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![];
                        if h.contains_key("x-broken") {
                            trailers.insert("grpc-status", "14".parse().unwrap());
                        } else {
                            let resp = decide(&check).unwrap();
                            frames.push(Ok(Frame::data(grpc::frame(&resp.encode_to_vec()))));
                            trailers.insert("grpc-status", "0".parse().unwrap());
                        }
                        frames.push(Ok(Frame::trailers(trailers)));
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(StreamBody::new(futures_util::stream::iter(frames)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen, task)
}

fn ext(addr: SocketAddr, fail_open: bool, body: Option<u32>, listed: &[&str]) -> ExtAuth {
    ExtAuth {
        backend: service("authz", &[addr], None),
        grpc: true,
        body_max_bytes: body,
        path_prefix: String::new(),
        headers_to_ext_auth: listed.iter().map(|s| s.to_string()).collect(),
        headers_to_backend: vec![],
        timeout_ms: 500,
        fail_open,
    }
}

fn secured(path: &str, e: &Echo, x: ExtAuth) -> HttpRouteRule {
    let mut r = rule(path, prefix(path), vec![wb(1, e.backend())]);
    r.action.security = Some(Arc::new(Security {
        policy: "apps/grpc".into(),
        ext_auth: Some(x),
        ..Security::default()
    }));
    r
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    send(&client(), addr, "GET", "h", path, headers).await
}

#[test]
fn check_request_field_numbers_are_envoys() {
    // HttpRequest.path is field 4 (tag 0x22), host 5 (0x2a), protocol 10 (0x52).
    let m = pb::HttpRequest {
        path: "/x".into(),
        host: "h".into(),
        protocol: "P".into(),
        ..Default::default()
    };
    assert_eq!(
        m.encode_to_vec(),
        [0x22, 2, b'/', b'x', 0x2a, 1, b'h', 0x52, 1, b'P']
    );
    // CheckResponse.ok_response is field 3 (0x1a), denied_response 2 (0x12).
    let ok = pb::CheckResponse {
        ok_response: Some(pb::OkHttpResponse::default()),
        ..Default::default()
    };
    assert_eq!(ok.encode_to_vec(), [0x1a, 0]);
}

#[tokio::test]
async fn grpc_ext_auth_allows_denies_times_out_and_fails_open() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (auth, seen, task) = grpc_auth().await;
        let dead = free_addr();
        let (_dp, addr) = serve(vec![
            secured("/app", &e, ext(auth, false, None, &[])),
            secured(
                "/listed",
                &e,
                ext(auth, false, None, &["authorization", "x-tenant"]),
            ),
            secured("/closed", &e, ext(dead, false, None, &[])),
            secured("/open", &e, ext(dead, true, None, &[])),
            secured("/slow-open", &e, ext(auth, true, None, &[])),
        ])
        .await;

        // Allowed: headers set, appended and removed; `:path` ignored.
        let g = get_with(
            addr,
            "/app/x?y=1",
            &[
                ("authorization", "Bearer good"),
                ("x-auth-user", "mallory"),
                ("x-tag", "client"),
                ("x-remove-me", "1"),
                ("x-tenant", "t1"),
            ],
        )
        .await;
        assert_eq!(g.status, 200, "{:?}", g.body);
        assert_eq!(g.echoed("x-auth-user").as_deref(), Some("alice"));
        assert_eq!(g.echoed("x-tag").as_deref(), Some("client,from-auth"));
        assert_eq!(g.echoed("x-remove-me"), None);
        assert_eq!(g.json()["path"], "/app/x?y=1");
        assert_eq!(g.header("x-from-auth"), Some("yes"));
        let (path, check) = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(path, "/envoy.service.auth.v3.Authorization/Check");
        let a = check.attributes.unwrap();
        let http = a.request.unwrap().http.unwrap();
        assert_eq!(http.method, "GET");
        assert_eq!(http.path, "/app/x?y=1");
        assert_eq!(http.host, "h");
        assert_eq!(http.scheme, "http");
        assert_eq!(http.protocol, "HTTP/1.1");
        assert_eq!(http.headers["x-tenant"], "t1");
        assert_eq!(http.headers[":method"], "GET");
        assert_eq!(http.headers[":authority"], "h");
        let src = a.source.unwrap().address.unwrap().socket_address.unwrap();
        assert_eq!(src.address, "127.0.0.1");
        assert_ne!(src.port_value, 0);
        let dst = a
            .destination
            .unwrap()
            .address
            .unwrap()
            .socket_address
            .unwrap();
        assert_eq!(dst.port_value, u32::from(addr.port()));

        // headersToExtAuth set: only those headers.
        let g = get_with(
            addr,
            "/listed",
            &[
                ("authorization", "Bearer good"),
                ("x-tenant", "t2"),
                ("x-other", "o"),
            ],
        )
        .await;
        assert_eq!(g.status, 200);
        let (_, check) = seen.lock().unwrap().last().cloned().unwrap();
        let h = check
            .attributes
            .unwrap()
            .request
            .unwrap()
            .http
            .unwrap()
            .headers;
        let mut keys: Vec<_> = h.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["authorization", "x-tenant"]);

        // Denied: the service's status, headers and body.
        let g = get_with(addr, "/app", &[("authorization", "Bearer bad")]).await;
        assert_eq!(g.status, 418);
        assert_eq!(g.header("x-ext"), Some("denied"));
        assert_eq!(&g.body[..], b"denied by grpc\n");
        assert_eq!(e.count(), 2, "denied requests never reach the backend");

        // Timeout and a non-OK grpc-status: fail closed, or open with failOpen.
        let g = get_with(
            addr,
            "/app",
            &[("authorization", "Bearer good"), ("x-slow", "1")],
        )
        .await;
        assert_eq!(g.status, 403);
        let g = get_with(
            addr,
            "/app",
            &[("authorization", "Bearer good"), ("x-broken", "1")],
        )
        .await;
        assert_eq!(g.status, 403);
        let g = get_with(addr, "/slow-open", &[("x-slow", "1")]).await;
        assert_eq!(g.status, 200);
        // Service down.
        assert_eq!(get_with(addr, "/closed", &[]).await.status, 403);
        assert_eq!(get_with(addr, "/open", &[]).await.status, 200);
        task.abort();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn body_to_ext_auth_over_grpc_and_http() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (auth, seen, task) = grpc_auth().await;
        let (_dp, addr) = serve(vec![
            secured("/grpc", &e, ext(auth, false, Some(64), &[])),
            secured("/nobody", &e, ext(auth, false, None, &[])),
        ])
        .await;
        let c = client();
        // The body decides, and still reaches the backend whole.
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/grpc",
            &[("content-type", "text/plain")],
            Bytes::from_static(b"please let me in"),
        )
        .await;
        assert_eq!(g.status, 200, "{:?}", g.body);
        assert_eq!(g.json()["body"], "please let me in");
        let (_, check) = seen.lock().unwrap().last().cloned().unwrap();
        let http = check.attributes.unwrap().request.unwrap().http.unwrap();
        assert_eq!(http.body, "please let me in");
        assert_eq!(http.size, 16);
        // Binary bodies go in raw_body.
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/grpc",
            &[],
            Bytes::from_static(b"\xff\xfe"),
        )
        .await;
        assert_eq!(g.status, 418);
        let (_, check) = seen.lock().unwrap().last().cloned().unwrap();
        let http = check.attributes.unwrap().request.unwrap().http.unwrap();
        assert_eq!(http.raw_body, b"\xff\xfe");
        // Past maxRequestBytes: 413 before the service is asked.
        let before = seen.lock().unwrap().len();
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/grpc",
            &[],
            Bytes::from(vec![b'a'; 65]),
        )
        .await;
        assert_eq!(g.status, 413);
        assert_eq!(seen.lock().unwrap().len(), before);
        // Without bodyToExtAuth the body is not sent.
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/nobody",
            &[],
            Bytes::from_static(b"please let me in"),
        )
        .await;
        assert_eq!(g.status, 418);
        task.abort();
    })
    .await
    .unwrap();
}

/// An HTTP authorization service that allows a request whose body says so.
async fn http_body_auth() -> (
    SocketAddr,
    Arc<Mutex<Vec<(String, Bytes)>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let ct = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        s.lock().unwrap().push((ct, body.clone()));
                        let status = if body.as_ref() == b"open sesame" {
                            200
                        } else {
                            403
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(http_body_util::Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen, task)
}

#[tokio::test]
async fn body_to_ext_auth_over_http() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (auth, seen, task) = http_body_auth().await;
        let mut x = ext(auth, false, Some(1024), &[]);
        x.grpc = false;
        let (_dp, addr) = serve(vec![secured("/h", &e, x)]).await;
        let c = client();
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/h",
            &[("content-type", "text/plain")],
            Bytes::from_static(b"open sesame"),
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["body"], "open sesame");
        let (ct, body) = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(ct, "text/plain");
        assert_eq!(&body[..], b"open sesame");
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/h",
            &[],
            Bytes::from_static(b"nope"),
        )
        .await;
        assert_eq!(g.status, 403);
        task.abort();
    })
    .await
    .unwrap();
}
