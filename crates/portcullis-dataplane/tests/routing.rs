//! Routing end to end: listener choice, precedence, canonical paths, gRPC lowering.

mod common;

use common::*;
use portcullis_ir::{PathMatch, StringMatch, ValueMatch};

#[tokio::test]
async fn listener_choice_by_most_specific_hostname() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b, c) = (
            Echo::start("exact").await,
            Echo::start("wild").await,
            Echo::start("any").await,
        );
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![
                listener(
                    "gw/any",
                    None,
                    vec![rule("r-any", prefix("/"), vec![wb(1, c.backend())])],
                ),
                listener(
                    "gw/wild",
                    Some("*.example.com"),
                    vec![rule("r-wild", prefix("/"), vec![wb(1, b.backend())])],
                ),
                listener(
                    "gw/exact",
                    Some("foo.example.com"),
                    vec![rule("r-exact", prefix("/"), vec![wb(1, a.backend())])],
                ),
            ],
        )
        .await;
        let r = get(addr, "foo.example.com:1234", "/").await;
        assert_eq!(r.json()["backend"], "exact");
        assert_eq!(
            r.json()["host"],
            "foo.example.com:1234",
            "host forwarded unchanged"
        );
        assert_eq!(
            get(addr, "bar.example.com", "/").await.json()["backend"],
            "wild"
        );
        assert_eq!(get(addr, "example.com", "/").await.json()["backend"], "any");
        assert_eq!(
            get(addr, "FOO.Example.COM", "/").await.json()["backend"],
            "exact"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn no_matching_listener_or_route_is_404() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "gw/l",
                Some("only.example.com"),
                vec![rule("r", prefix("/api"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let r = get(addr, "other.example.com", "/api").await;
        assert_eq!(r.status, 404);
        assert_eq!(&r.body[..], b"no route\n");
        assert_eq!(get(addr, "only.example.com", "/apix").await.status, 404);
        assert_eq!(get(addr, "only.example.com", "/api/x").await.status, 200);
        assert_eq!(e.count(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn precedence_end_to_end() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let names = [
            "exact",
            "prefix-long",
            "prefix",
            "regex",
            "method",
            "header",
            "query",
            "host",
        ];
        let mut echos = Vec::new();
        for n in names {
            echos.push(Echo::start(n).await);
        }
        let b = |i: usize| vec![wb(1, echos[i].backend())];
        let mut method = rule("m", prefix("/m"), b(4));
        method.matches.method = Some("POST".into());
        let mut header = rule("h", prefix("/m"), b(5));
        header.matches.headers = vec![ValueMatch {
            name: "x-v".into(),
            value: StringMatch::Exact("1".into()),
        }];
        let mut query = rule("q", prefix("/m"), b(6));
        query.matches.query_params = vec![ValueMatch {
            name: "v".into(),
            value: StringMatch::Regex("[0-9]+".into()),
        }];
        let mut host = rule("host", prefix("/"), b(7));
        host.hostnames = vec!["h.example.com".into()];
        let rules = vec![
            rule("e", exact("/a/b"), b(0)),
            rule("pl", prefix("/a/b/"), b(1)),
            rule("p", prefix("/a"), b(2)),
            rule("re", PathMatch::Regex("/r/[a-z]+".into()), b(3)),
            method,
            header,
            query,
            host,
        ];
        let (_dp, addr) = serve(rules).await;
        let c = client();
        let who = |g: Got| g.json()["backend"].as_str().unwrap().to_string();
        assert_eq!(who(send(&c, addr, "GET", "x", "/a/b", &[]).await), "exact");
        assert_eq!(
            who(send(&c, addr, "GET", "x", "/a/b/c", &[]).await),
            "prefix-long"
        );
        assert_eq!(
            who(send(&c, addr, "GET", "x", "/a/bc", &[]).await),
            "prefix"
        );
        assert_eq!(
            who(send(&c, addr, "GET", "x", "/r/abc", &[]).await),
            "regex"
        );
        assert_eq!(
            send(&c, addr, "GET", "x", "/r/abc1", &[]).await.status,
            404,
            "regex is anchored"
        );
        assert_eq!(
            who(send(&c, addr, "POST", "x", "/m?v=1", &[("x-v", "1")]).await),
            "method"
        );
        assert_eq!(
            who(send(&c, addr, "GET", "x", "/m?v=1", &[("X-V", "1")]).await),
            "header"
        );
        assert_eq!(
            who(send(&c, addr, "GET", "x", "/m?v=1", &[("x-v", "2")]).await),
            "query"
        );
        assert_eq!(send(&c, addr, "GET", "x", "/m?v=a", &[]).await.status, 404);
        assert_eq!(
            who(send(&c, addr, "GET", "h.example.com", "/a/b", &[]).await),
            "host"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn canonical_path_is_matched_and_forwarded() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (b, other) = (Echo::start("b").await, Echo::start("other").await);
        let (_dp, addr) = serve(vec![
            rule("b", prefix("/b"), vec![wb(1, b.backend())]),
            rule("o", prefix("/"), vec![wb(1, other.backend())]),
        ])
        .await;
        let c = client();
        let r = send(&c, addr, "GET", "x", "/a/../b", &[]).await;
        assert_eq!(
            (r.json()["backend"].as_str(), r.json()["path"].as_str()),
            (Some("b"), Some("/b"))
        );
        let r = send(&c, addr, "GET", "x", "/a/%2e%2e/b/x?q=1", &[]).await;
        assert_eq!(
            (r.json()["backend"].as_str(), r.json()["path"].as_str()),
            (Some("b"), Some("/b/x?q=1"))
        );
        let r = send(&c, addr, "GET", "x", "/%2e%2e/", &[]).await;
        assert_eq!(r.json()["path"], "/");
        let r = send(&c, addr, "GET", "x", "/b%2fx", &[]).await;
        assert_eq!(
            (r.json()["backend"].as_str(), r.json()["path"].as_str()),
            (Some("other"), Some("/b%2Fx"))
        );
        // Adjacent slashes are merged (Envoy Gateway's default): `//b` is `/b`.
        let r = send(&c, addr, "GET", "x", "//b", &[]).await;
        assert_eq!(
            (r.json()["backend"].as_str(), r.json()["path"].as_str()),
            (Some("b"), Some("/b"))
        );
        let r = send(&c, addr, "GET", "x", "/%62", &[]).await;
        assert_eq!(
            (r.json()["backend"].as_str(), r.json()["path"].as_str()),
            (Some("b"), Some("/b"))
        );
        let (resp, _) = raw(addr, b"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn grpc_rules_use_h2_upstream() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (svc, method) = (Echo::start("svc").await, Echo::start("method").await);
        let mut r1 = rule("g", exact("/pkg.Svc/Get"), vec![wb(1, svc.backend())]);
        r1.matches.grpc = true;
        r1.meta.kind = "GRPCRoute".into();
        let mut r2 = rule(
            "g",
            PathMatch::Regex("/[^/]+/Put".into()),
            vec![wb(1, method.backend())],
        );
        r2.matches.grpc = true;
        r2.meta.kind = "GRPCRoute".into();
        r2.meta.rule_index = 1;
        let (_dp, addr) = serve(vec![r1, r2]).await;
        let c = h2_client();
        let r = send(
            &c,
            addr,
            "POST",
            "x",
            "/pkg.Svc/Get",
            &[("content-type", "application/grpc")],
        )
        .await;
        assert_eq!(r.json()["backend"], "svc");
        assert_eq!(r.json()["version"], "HTTP/2.0");
        let r = send(&c, addr, "POST", "x", "/other.Svc/Put", &[]).await;
        assert_eq!(r.json()["backend"], "method");
    })
    .await
    .unwrap();
}
