//! Every HTTP filter end to end.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use portcullis_ir::*;

fn with_filters(mut r: HttpRouteRule, filters: Vec<HttpFilter>) -> HttpRouteRule {
    r.action.filters = filters;
    r
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

#[tokio::test]
async fn request_and_response_header_modifiers() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let r = with_filters(
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            vec![
                HttpFilter::RequestHeaderModifier(HeaderModifier {
                    set: vec![kv("X-Set", "set")],
                    add: vec![kv("X-Add", "added")],
                    remove: vec!["x-remove".into()],
                }),
                HttpFilter::ResponseHeaderModifier(HeaderModifier {
                    set: vec![kv("X-Backend", "overridden")],
                    add: vec![kv("X-Resp-Add", "1")],
                    remove: vec!["content-type".into()],
                }),
            ],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let g = send(
            &client(),
            addr,
            "GET",
            "h",
            "/",
            &[("x-set", "old"), ("X-Add", "orig"), ("X-Remove", "x")],
        )
        .await;
        assert_eq!(g.echoed("x-set").as_deref(), Some("set"));
        assert_eq!(g.echoed("x-add").as_deref(), Some("orig,added"));
        assert_eq!(g.echoed("x-remove"), None);
        assert_eq!(g.header("x-backend"), Some("overridden"));
        assert_eq!(g.header("x-resp-add"), Some("1"));
        assert_eq!(g.header("content-type"), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backend_filters_apply_after_rule_filters_for_the_chosen_backend_only() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b) = (Echo::start("a").await, Echo::start("b").await);
        let mut wa = wb(1, a.backend());
        wa.filters = vec![HttpFilter::RequestHeaderModifier(HeaderModifier {
            set: vec![kv("x-who", "backend-a")],
            ..Default::default()
        })];
        let wbb = wb(1, b.backend());
        let r = with_filters(
            rule("r", prefix("/"), vec![wa, wbb]),
            vec![HttpFilter::RequestHeaderModifier(HeaderModifier {
                set: vec![kv("x-who", "rule")],
                ..Default::default()
            })],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let c = client();
        let (mut seen_a, mut seen_b) = (0, 0);
        for _ in 0..40 {
            let g = send(&c, addr, "GET", "h", "/", &[]).await;
            match g.json()["backend"].as_str().unwrap() {
                "a" => {
                    seen_a += 1;
                    assert_eq!(g.echoed("x-who").as_deref(), Some("backend-a"));
                }
                _ => {
                    seen_b += 1;
                    assert_eq!(g.echoed("x-who").as_deref(), Some("rule"));
                }
            }
        }
        assert!(seen_a > 0 && seen_b > 0);
    })
    .await
    .unwrap();
}

fn redirect(
    scheme: Option<&str>,
    host: Option<&str>,
    port: Option<u16>,
    path: Option<PathModifier>,
    code: u16,
) -> HttpFilter {
    HttpFilter::RequestRedirect(Redirect {
        scheme: scheme.map(Into::into),
        hostname: host.map(Into::into),
        path,
        port,
        status_code: code,
    })
}

#[tokio::test]
async fn request_redirect() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let rules = vec![
            with_filters(
                rule("a", prefix("/scheme"), vec![]),
                vec![redirect(Some("https"), None, None, None, 301)],
            ),
            with_filters(
                rule("b", prefix("/host"), vec![]),
                vec![redirect(None, Some("other.org"), None, None, 302)],
            ),
            with_filters(
                rule("c", prefix("/port"), vec![]),
                vec![redirect(None, None, Some(8443), None, 307)],
            ),
            with_filters(
                rule("d", prefix("/full"), vec![]),
                vec![redirect(
                    None,
                    None,
                    None,
                    Some(PathModifier::ReplaceFullPath("/new".into())),
                    308,
                )],
            ),
            with_filters(
                rule("e", prefix("/pre"), vec![]),
                vec![redirect(
                    None,
                    None,
                    None,
                    Some(PathModifier::ReplacePrefixMatch("/swap".into())),
                    303,
                )],
            ),
        ];
        let (_dp, addr) = serve(rules).await;
        let port = addr.port();
        let c = client();
        let loc = |g: &Got| g.header("location").unwrap().to_string();
        let g = send(&c, addr, "GET", "ex.com", "/scheme/x?q=1", &[]).await;
        assert_eq!(
            (g.status, loc(&g)),
            (301, "https://ex.com/scheme/x?q=1".to_string())
        );
        let g = send(&c, addr, "GET", "ex.com:99", "/host", &[]).await;
        assert_eq!(
            (g.status, loc(&g)),
            (302, format!("http://other.org:{port}/host"))
        );
        let g = send(&c, addr, "GET", "ex.com", "/port", &[]).await;
        assert_eq!(
            (g.status, loc(&g)),
            (307, "http://ex.com:8443/port".to_string())
        );
        let g = send(&c, addr, "GET", "ex.com", "/full/a/b", &[]).await;
        assert_eq!(
            (g.status, loc(&g)),
            (308, format!("http://ex.com:{port}/new"))
        );
        let g = send(&c, addr, "GET", "ex.com", "/pre/a", &[]).await;
        assert_eq!(
            (g.status, loc(&g)),
            (303, format!("http://ex.com:{port}/swap/a"))
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn url_rewrite_host_and_paths() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let rw = |host: Option<&str>, path: Option<PathModifier>| {
            HttpFilter::UrlRewrite(UrlRewrite {
                hostname: host.map(Into::into),
                path,
            })
        };
        let rules = vec![
            with_filters(
                rule("h", prefix("/host"), vec![wb(1, e.backend())]),
                vec![rw(Some("rewritten.example"), None)],
            ),
            with_filters(
                rule("f", prefix("/full"), vec![wb(1, e.backend())]),
                vec![rw(
                    None,
                    Some(PathModifier::ReplaceFullPath("/replaced".into())),
                )],
            ),
            with_filters(
                rule("p", prefix("/foo/"), vec![wb(1, e.backend())]),
                vec![rw(
                    None,
                    Some(PathModifier::ReplacePrefixMatch("/bar".into())),
                )],
            ),
            with_filters(
                rule("s", prefix("/slash"), vec![wb(1, e.backend())]),
                vec![rw(None, Some(PathModifier::ReplacePrefixMatch("/".into())))],
            ),
        ];
        let (_dp, addr) = serve(rules).await;
        let c = client();
        let g = send(&c, addr, "GET", "orig.example", "/host/x", &[]).await;
        assert_eq!(g.json()["host"], "rewritten.example");
        assert_eq!(g.json()["path"], "/host/x");
        let cases = [
            ("/full/a?x=1", "/replaced?x=1"),
            ("/foo", "/bar"),
            ("/foo/", "/bar/"),
            ("/foo/x/y", "/bar/x/y"),
            ("/slash", "/"),
            ("/slash/", "/"),
            ("/slash/z", "/z"),
        ];
        for (from, to) in cases {
            let g = send(&c, addr, "GET", "orig.example", from, &[]).await;
            assert_eq!(g.json()["path"], to, "{from}");
            assert_eq!(g.json()["host"], "orig.example");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn request_mirror_copies_without_slowing_the_main_request() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (main, m1, m2, slow) = (
            Echo::start("main").await,
            Echo::start("m1").await,
            Echo::start("m2").await,
            Echo::start_slow("slow", 2000).await,
        );
        let mirror = |e: &Echo, num, den| {
            HttpFilter::RequestMirror(Mirror {
                backend: wb(1, e.backend()),
                numerator: num,
                denominator: den,
            })
        };
        let r = with_filters(
            rule("r", prefix("/"), vec![wb(1, main.backend())]),
            vec![
                HttpFilter::RequestHeaderModifier(HeaderModifier {
                    set: vec![kv("x-mod", "1")],
                    ..Default::default()
                }),
                mirror(&m1, 100, 100),
                mirror(&m2, 0, 100),
                mirror(&slow, 1, 1),
            ],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let c = client();
        for i in 0..5 {
            let start = std::time::Instant::now();
            // The slow mirror answers after 2 s; the main request must not wait for it.
            let g = send_body(
                &c,
                addr,
                "POST",
                "h",
                &format!("/m{i}"),
                &[],
                Bytes::from("payload"),
            )
            .await;
            assert_eq!(g.status, 200);
            assert!(start.elapsed() < Duration::from_secs(1));
        }
        // Mirrors are asynchronous: wait (bounded) for the copies.
        for _ in 0..200 {
            if m1.count() == 5 && slow.count() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(m1.count(), 5);
        assert_eq!(slow.count(), 5);
        assert_eq!(m2.count(), 0, "0% mirror never fires");
        let copy = m1.seen.lock().unwrap()[0].clone();
        assert_eq!(copy["method"], "POST");
        assert_eq!(copy["body"], "payload");
        assert_eq!(copy["host"], "h");
        assert_eq!(
            copy["headers"]["x-mod"], "1",
            "filters before the mirror apply to the copy"
        );
        assert_eq!(main.count(), 5);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn mirror_to_a_dead_backend_does_not_fail_the_request() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let main = Echo::start("main").await;
        let dead = service("dead", &[free_addr()], None);
        let r = with_filters(
            rule("r", prefix("/"), vec![wb(1, main.backend())]),
            vec![HttpFilter::RequestMirror(Mirror {
                backend: wb(1, dead),
                numerator: 1,
                denominator: 1,
            })],
        );
        let (_dp, addr) = serve(vec![r]).await;
        for _ in 0..3 {
            assert_eq!(get(addr, "h", "/").await.status, 200);
        }
    })
    .await
    .unwrap();
}

fn cors_rule(path: &str, e: &Echo, cors: Cors) -> HttpRouteRule {
    with_filters(
        rule(path, prefix(path), vec![wb(1, e.backend())]),
        vec![HttpFilter::Cors(cors)],
    )
}

#[tokio::test]
async fn cors_preflight_and_simple_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let rules = vec![
            cors_rule(
                "/cors-1",
                &e,
                Cors {
                    allow_origins: s(&["https://www.foo.com", "https://*.bar.com"]),
                    allow_credentials: true,
                    allow_methods: s(&["GET", "OPTIONS"]),
                    allow_headers: s(&["x-header-1", "x-header-2"]),
                    expose_headers: s(&["x-header-3", "x-header-4"]),
                    max_age: Some(3600),
                },
            ),
            cors_rule(
                "/cors-2",
                &e,
                Cors {
                    allow_origins: s(&["https://www.foo.com"]),
                    allow_methods: s(&["*"]),
                    ..Default::default()
                },
            ),
            cors_rule(
                "/cors-star",
                &e,
                Cors {
                    allow_origins: s(&["*"]),
                    allow_methods: s(&["*"]),
                    allow_headers: s(&["*"]),
                    allow_credentials: true,
                    ..Default::default()
                },
            ),
        ];
        let (_dp, addr) = serve(rules).await;
        let c = client();
        let pre = |origin: &'static str, method: &'static str, hdrs: Option<&'static str>| {
            let mut v = vec![
                ("origin", origin),
                ("access-control-request-method", method),
            ];
            if let Some(h) = hdrs {
                v.push(("access-control-request-headers", h));
            }
            v
        };
        for origin in [
            "https://www.foo.com",
            "https://www.bar.com",
            "https://xpto.www.bar.com",
        ] {
            let g = send(
                &c,
                addr,
                "OPTIONS",
                "h",
                "/cors-1",
                &pre(origin, "GET", Some("x-header-1, x-header-2")),
            )
            .await;
            assert_eq!(g.status, 200);
            assert_eq!(g.header("access-control-allow-origin"), Some(origin));
            assert_eq!(
                g.header("access-control-allow-methods"),
                Some("GET, OPTIONS")
            );
            assert_eq!(
                g.header("access-control-allow-headers"),
                Some("x-header-1, x-header-2")
            );
            assert_eq!(
                g.header("access-control-expose-headers"),
                Some("x-header-3, x-header-4")
            );
            assert_eq!(g.header("access-control-max-age"), Some("3600"));
            assert_eq!(g.header("access-control-allow-credentials"), Some("true"));
        }
        assert_eq!(e.count(), 0, "preflights never reach the backend");
        let g = send(
            &c,
            addr,
            "OPTIONS",
            "h",
            "/cors-1",
            &pre("https://foobar.com", "GET", None),
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.header("access-control-allow-origin"), None);
        let g = send(
            &c,
            addr,
            "GET",
            "h",
            "/cors-1",
            &[("origin", "https://www.bar.com")],
        )
        .await;
        assert_eq!(
            (g.status, g.header("access-control-allow-origin")),
            (200, Some("https://www.bar.com"))
        );
        assert_eq!(g.header("access-control-allow-credentials"), Some("true"));
        let g = send(
            &c,
            addr,
            "GET",
            "h",
            "/cors-1",
            &[("origin", "https://foobar.com")],
        )
        .await;
        assert_eq!(
            (g.status, g.header("access-control-allow-origin")),
            (200, None)
        );
        let g = send(
            &c,
            addr,
            "OPTIONS",
            "h",
            "/cors-2",
            &pre("https://www.foo.com", "POST", None),
        )
        .await;
        assert_eq!(g.header("access-control-allow-methods"), Some("POST"));
        assert_eq!(g.header("access-control-allow-credentials"), None);
        assert_eq!(g.header("access-control-max-age"), Some("5"));
        let g = send(
            &c,
            addr,
            "OPTIONS",
            "h",
            "/cors-star",
            &pre(
                "https://other.foo.com",
                "PUT",
                Some("x-header-1, x-header-2"),
            ),
        )
        .await;
        assert_eq!(
            g.header("access-control-allow-origin"),
            Some("https://other.foo.com")
        );
        assert_eq!(g.header("access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            g.header("access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(g.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(e.count(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_filter_is_500() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let r = with_filters(
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            vec![HttpFilter::Invalid {
                reason: "unknown ExtensionRef".into(),
            }],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let g = get(addr, "h", "/").await;
        assert_eq!(g.status, 500);
        assert_eq!(&g.body[..], b"invalid filter\n");
        assert_eq!(e.count(), 0);
    })
    .await
    .unwrap();
}
