//! SecurityPolicy end to end over real sockets: JWT (with a JWKS served over
//! HTTPS by the test), Basic auth (an htpasswd file written by Debian's
//! apache2-utils), API keys, authorization, external authorization (an HTTP
//! service run by the test), CORS preflights and the canonical path.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_ir::security::*;
use portcullis_ir::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;

fn secured(mut r: HttpRouteRule, s: Security) -> HttpRouteRule {
    r.action.security = Some(Arc::new(s));
    r
}

fn policy() -> Security {
    Security {
        policy: "apps/test".into(),
        ..Security::default()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key with its public JWK.
struct SigningKey {
    alg: Algorithm,
    kid: String,
    enc: EncodingKey,
    jwk: Value,
}

/// DER `SEQUENCE { INTEGER n, INTEGER e }` (PKCS#1 RSAPublicKey) → (n, e).
fn rsa_public(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn tlv(b: &[u8]) -> (u8, &[u8], &[u8]) {
        let tag = b[0];
        let (len, hdr) = if b[1] & 0x80 == 0 {
            (b[1] as usize, 2)
        } else {
            let n = (b[1] & 0x7f) as usize;
            let mut l = 0usize;
            for i in 0..n {
                l = l << 8 | b[2 + i] as usize;
            }
            (l, 2 + n)
        };
        (tag, &b[hdr..hdr + len], &b[hdr + len..])
    }
    let (_, seq, _) = tlv(der);
    let (_, n, rest) = tlv(seq);
    let (_, e, _) = tlv(rest);
    let strip = |v: &[u8]| {
        v.iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect::<Vec<u8>>()
    };
    (strip(n), strip(e))
}

impl SigningKey {
    fn new(alg: Algorithm, kid: &str) -> SigningKey {
        let rc: &rcgen::SignatureAlgorithm = match alg {
            Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::EdDSA => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_RSA_SHA256,
        };
        let kp = rcgen::KeyPair::generate_for(rc).unwrap();
        let der = kp.serialize_der();
        let raw = kp.public_key_raw().to_vec();
        let (enc, jwk) = match alg {
            Algorithm::ES256 => (
                EncodingKey::from_ec_der(&der),
                json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}),
            ),
            Algorithm::EdDSA => (
                EncodingKey::from_ed_der(&der),
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(&raw)}),
            ),
            _ => {
                let (n, e) = rsa_public(&raw);
                (
                    EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).unwrap(),
                    json!({"kty": "RSA", "n": B64.encode(n), "e": B64.encode(e)}),
                )
            }
        };
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        SigningKey {
            alg,
            kid: kid.into(),
            enc,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// A JWKS endpoint over HTTPS whose document and availability the test changes.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<Mutex<String>>,
    down: Arc<AtomicBool>,
    hits: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(leaf: &tls::Leaf, doc: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = portcullis_tls::tokio_rustls::TlsAcceptor::from(tls::server_config(
            leaf,
            &[b"http/1.1"],
        ));
        let doc = Arc::new(Mutex::new(doc));
        let down = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(Mutex::new(0));
        let (d, dn, h) = (doc.clone(), down.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, d, dn, h) = (acceptor.clone(), d.clone(), dn.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |_req| {
                        let (d, dn, h) = (d.clone(), dn.clone(), h.clone());
                        async move {
                            *h.lock().unwrap() += 1;
                            let (status, body) = if dn.load(Ordering::SeqCst) {
                                (503, "down".to_string())
                            } else {
                                (200, d.lock().unwrap().clone())
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            doc,
            down,
            hits,
            task,
        }
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    send(&client(), addr, "GET", "h", path, headers).await
}

/// Poll until `f` is true (bounded).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn jwt_remote_jwks_over_https_every_denial_path() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = tls::Ca::new("jwks-ca");
        let ca_file =
            std::env::temp_dir().join(format!("portcullis-jwks-ca-{}.pem", std::process::id()));
        std::fs::write(&ca_file, &ca.pem).unwrap();
        // The fetcher verifies against the system roots, which honour SSL_CERT_FILE.
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var("SSL_CERT_FILE", &ca_file) };
        let k1 = SigningKey::new(Algorithm::ES256, "k1");
        let k2 = SigningKey::new(Algorithm::EdDSA, "k2");
        let rsa = SigningKey::new(Algorithm::RS256, "r1");
        let impostor = SigningKey::new(Algorithm::ES256, "k1");
        let server = JwksServer::start(&ca.leaf(&["localhost"]), jwks(&[&k1, &rsa])).await;
        let e = Echo::start("e").await;
        let sec = Security {
            jwt: Some(Jwt {
                optional: false,
                providers: vec![JwtProvider {
                    name: "example".into(),
                    issuer: Some("https://issuer.example".into()),
                    audiences: vec!["api".into()],
                    keys: JwksSource::Remote {
                        uri: format!("https://localhost:{}/jwks.json", server.addr.port()),
                        refresh_s: 1,
                    },
                    claim_to_headers: vec![
                        ("x-user".into(), "sub".into()),
                        ("x-team".into(), "org.team".into()),
                    ],
                    extract: TokenSources {
                        headers: vec![("authorization".into(), "Bearer ".into())],
                        cookies: vec!["session".into()],
                        params: vec![],
                    },
                }],
            }),
            ..policy()
        };
        let (_dp, addr) = serve(vec![secured(
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            sec,
        )])
        .await;
        let good = json!({"iss": "https://issuer.example", "aud": "api", "sub": "alice",
            "org": {"team": "blue"}, "exp": now() + 600});
        let t = k1.sign(&good);
        eventually("the JWKS to be fetched", || {
            let a = bearer(&t);
            async move { get_with(addr, "/", &[("authorization", &a)]).await.status == 200 }
        })
        .await;
        // Valid: claims become headers, the token is not forwarded, inbound claim headers are dropped.
        let g = get_with(
            addr,
            "/",
            &[("authorization", &bearer(&t)), ("x-user", "mallory")],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("x-user").as_deref(), Some("alice"));
        assert_eq!(g.echoed("x-team").as_deref(), Some("blue"));
        assert_eq!(g.echoed("authorization"), None);
        // RS256 from the same set, and a token from a cookie.
        let g = get_with(
            addr,
            "/",
            &[("cookie", &format!("a=1; session={}", rsa.sign(&good)))],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("cookie").as_deref(), Some("a=1"));

        let deny = |g: &Got, invalid: bool| {
            assert_eq!(g.status, 401, "{:?}", g.body);
            let c = g.header("www-authenticate").unwrap_or_default().to_string();
            assert!(c.starts_with("Bearer realm="), "{c}");
            assert_eq!(c.contains("invalid_token"), invalid, "{c}");
        };
        // Missing.
        deny(&get_with(addr, "/", &[]).await, false);
        // Malformed.
        deny(
            &get_with(addr, "/", &[("authorization", "Bearer abc.def")]).await,
            true,
        );
        deny(
            &get_with(addr, "/", &[("authorization", "Bearer a.b.c")]).await,
            true,
        );
        // Expired, beyond the skew.
        let mut c = good.clone();
        c["exp"] = json!(now() - 3600);
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&k1.sign(&c)))]).await,
            true,
        );
        // Not yet valid.
        let mut c = good.clone();
        c["nbf"] = json!(now() + 3600);
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&k1.sign(&c)))]).await,
            true,
        );
        // Wrong issuer, wrong audience.
        let mut c = good.clone();
        c["iss"] = json!("https://evil.example");
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&k1.sign(&c)))]).await,
            true,
        );
        let mut c = good.clone();
        c["aud"] = json!(["other"]);
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&k1.sign(&c)))]).await,
            true,
        );
        // Wrong signature (another key claiming kid k1).
        deny(
            &get_with(
                addr,
                "/",
                &[("authorization", &bearer(&impostor.sign(&good)))],
            )
            .await,
            true,
        );
        // alg: none.
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            B64.encode(good.to_string())
        );
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&none))]).await,
            true,
        );
        // HS256 signed with the public JWK as a secret (key confusion).
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good,
            &EncodingKey::from_secret(k1.jwk.to_string().as_bytes()),
        )
        .unwrap();
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&hs))]).await,
            true,
        );

        // Key rotation: a token with a new kid is refused until the set holds it, then accepted.
        let t2 = k2.sign(&good);
        deny(
            &get_with(addr, "/", &[("authorization", &bearer(&t2))]).await,
            true,
        );
        *server.doc.lock().unwrap() = jwks(&[&k1, &k2]);
        eventually("the rotated key to be picked up", || {
            let a = bearer(&t2);
            async move { get_with(addr, "/", &[("authorization", &a)]).await.status == 200 }
        })
        .await;

        // A key removed from the set: the token it verified before (remembered
        // since, auth/verified.rs) is refused once the set no longer holds it.
        assert_eq!(
            get_with(addr, "/", &[("authorization", &bearer(&t))])
                .await
                .status,
            200
        );
        *server.doc.lock().unwrap() = jwks(&[&k2]);
        eventually("the removed key to stop admitting its token", || {
            let a = bearer(&t);
            async move { get_with(addr, "/", &[("authorization", &a)]).await.status == 401 }
        })
        .await;
        assert_eq!(
            get_with(addr, "/", &[("authorization", &bearer(&t2))])
                .await
                .status,
            200
        );
        *server.doc.lock().unwrap() = jwks(&[&k1, &k2]);
        eventually("the key back", || {
            let a = bearer(&t);
            async move { get_with(addr, "/", &[("authorization", &a)]).await.status == 200 }
        })
        .await;

        // JWKS endpoint down: the last good keys stay in use.
        server.down.store(true, Ordering::SeqCst);
        let before = *server.hits.lock().unwrap();
        eventually("a failed refresh", || async {
            *server.hits.lock().unwrap() > before + 1
        })
        .await;
        assert_eq!(
            get_with(addr, "/", &[("authorization", &bearer(&t2))])
                .await
                .status,
            200
        );
        assert_eq!(
            get_with(addr, "/", &[("authorization", &bearer(&t))])
                .await
                .status,
            200
        );
        // Down for good (the server is gone): still the last good keys.
        drop(server);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            get_with(addr, "/", &[("authorization", &bearer(&t))])
                .await
                .status,
            200
        );
        let _ = std::fs::remove_file(&ca_file);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn jwt_local_jwks_optional_and_claims_authorization() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let k = SigningKey::new(Algorithm::ES256, "local");
        let e = Echo::start("e").await;
        let provider = JwtProvider {
            name: "local".into(),
            issuer: None,
            audiences: vec![],
            keys: JwksSource::Local(jwks(&[&k])),
            claim_to_headers: vec![],
            extract: TokenSources {
                headers: vec![("authorization".into(), "Bearer ".into())],
                cookies: vec![],
                params: vec!["access_token".into()],
            },
        };
        let sec = Security {
            jwt: Some(Jwt {
                optional: true,
                providers: vec![provider],
            }),
            authorization: Some(Authorization {
                default_allow: false,
                rules: vec![AuthorizationRule {
                    name: "admins".into(),
                    allow: true,
                    client_cidrs: vec![],
                    jwt: Some(JwtPrincipal {
                        provider: "local".into(),
                        claims: vec![JwtClaim {
                            name: "groups".into(),
                            string_array: true,
                            values: vec!["admin".into()],
                        }],
                        scopes: vec!["write".into()],
                    }),
                    headers: vec![],
                }],
            }),
            ..policy()
        };
        let (_dp, addr) = serve(vec![secured(rule("r", prefix("/"), vec![wb(1, e.backend())]), sec)]).await;
        let admin = k.sign(&json!({"sub": "a", "groups": ["dev", "admin"], "scope": "read write", "exp": now() + 60}));
        let reader = k.sign(&json!({"sub": "b", "groups": ["dev"], "scope": "read", "exp": now() + 60}));
        assert_eq!(get_with(addr, "/", &[("authorization", &bearer(&admin))]).await.status, 200);
        // From a query parameter, which is removed before the backend.
        let g = get_with(addr, &format!("/x?a=1&access_token={admin}"), &[]).await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["path"], "/x?a=1");
        assert_eq!(get_with(addr, "/", &[("authorization", &bearer(&reader))]).await.status, 403);
        // Optional: no token passes authentication, then authorization denies it.
        assert_eq!(get_with(addr, "/", &[]).await.status, 403);
        // Optional does not let an invalid token through.
        assert_eq!(get_with(addr, "/", &[("authorization", "Bearer x.y.z")]).await.status, 401);
        // A gRPC client (HTTP/2, application/grpc) gets its denials as gRPC statuses.
        let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let call = |token: Option<String>| {
            let mut b = ::http::Request::builder()
                .method("POST")
                .uri(format!("http://{addr}/pkg.Svc/Method"))
                .header("content-type", "application/grpc")
                .header("te", "trailers");
            if let Some(t) = token {
                b = b.header("authorization", bearer(&t));
            }
            c.request(b.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap())
        };
        for (token, code) in [(Some("x.y.z".to_string()), "16"), (Some(reader.clone()), "7")] {
            let r = call(token).await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "application/grpc");
            assert_eq!(r.headers()["grpc-status"], code);
        }
        let r = call(Some("x.y.z".into())).await.unwrap();
        assert!(r.headers().contains_key("www-authenticate"), "{:?}", r.headers());
    })
    .await
    .unwrap();
}

/// The htpasswd file: written by `htpasswd` when installed, else the committed
/// fixture made with it. alice: bcrypt, bob: {SHA}, carol: MD5 (unsupported).
fn htpasswd() -> String {
    let dir = std::env::temp_dir().join(format!("portcullis-htpasswd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("htpasswd");
    let run = |args: &[&str]| {
        std::process::Command::new("htpasswd")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let fs = f.to_str().unwrap();
    let made = run(&["-cbB", fs, "alice", "wonder land"])
        && run(&["-bs", fs, "bob", "b0b-secret"])
        && run(&["-bm", fs, "carol", "md5-unsupported"]);
    let text = if made {
        std::fs::read_to_string(&f).unwrap()
    } else {
        eprintln!("htpasswd (apache2-utils) not installed: using the committed fixture");
        include_str!("fixtures/htpasswd").to_string()
    };
    let _ = std::fs::remove_dir_all(&dir);
    text
}

fn basic_header(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn basic_auth_with_a_real_htpasswd_file() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let sec = Security {
            basic: Some(BasicAuth {
                htpasswd: SecretString(htpasswd()),
                forward_username_header: Some("x-user".into()),
            }),
            ..policy()
        };
        let (_dp, addr) = serve(vec![secured(
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            sec,
        )])
        .await;
        let g = get_with(addr, "/", &[]).await;
        assert_eq!(g.status, 401);
        assert_eq!(
            g.header("www-authenticate"),
            Some("Basic realm=\"http://h\"")
        );
        let g = get_with(
            addr,
            "/",
            &[
                ("authorization", &basic_header("alice", "wonder land")),
                ("x-user", "root"),
            ],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("x-user").as_deref(), Some("alice"));
        assert_eq!(g.echoed("authorization"), None);
        let g = get_with(
            addr,
            "/",
            &[("authorization", &basic_header("bob", "b0b-secret"))],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("x-user").as_deref(), Some("bob"));
        for (u, p) in [
            ("alice", "wonder lan"),
            ("bob", "b0b-secreT"),
            ("carol", "md5-unsupported"),
            ("dave", "x"),
            ("alice", ""),
        ] {
            let g = get_with(addr, "/", &[("authorization", &basic_header(u, p))]).await;
            assert_eq!(g.status, 401, "{u}");
            assert!(
                g.header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Basic "))
            );
        }
        let g = get_with(addr, "/", &[("authorization", "Basic !!!")]).await;
        assert_eq!(g.status, 401);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn api_keys_from_header_query_and_cookie() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let sec = Security {
            api_key: Some(ApiKeyAuth {
                clients: vec![
                    ("client-a".into(), SecretString("key-aaaa".into())),
                    ("client-b".into(), SecretString("key-bbbb".into())),
                ],
                extract: vec![
                    TokenSources {
                        headers: vec![("x-api-key".into(), String::new())],
                        ..Default::default()
                    },
                    TokenSources {
                        params: vec!["api_key".into()],
                        ..Default::default()
                    },
                    TokenSources {
                        cookies: vec!["apikey".into()],
                        ..Default::default()
                    },
                ],
                forward_client_id_header: Some("x-client-id".into()),
                sanitize: true,
            }),
            policy: "apps/keys".into(),
            ..policy()
        };
        let (_dp, addr) = serve(vec![secured(
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            sec,
        )])
        .await;
        let g = get_with(addr, "/", &[]).await;
        assert_eq!(g.status, 401);
        assert!(g.header("www-authenticate").is_some());
        let g = get_with(
            addr,
            "/",
            &[("x-api-key", "key-bbbb"), ("x-client-id", "client-a")],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("x-client-id").as_deref(), Some("client-b"));
        assert_eq!(g.echoed("x-api-key"), None, "sanitized");
        let g = get_with(addr, "/p?api_key=key-aaaa&q=1", &[]).await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["path"], "/p?q=1");
        assert_eq!(g.echoed("x-client-id").as_deref(), Some("client-a"));
        let g = get_with(addr, "/", &[("cookie", "apikey=key-aaaa; other=1")]).await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("cookie").as_deref(), Some("other=1"));
        for bad in ["key-aaa", "key-aaaaa", "KEY-AAAA", ""] {
            let g = get_with(addr, "/", &[("x-api-key", bad)]).await;
            assert_eq!(g.status, 401, "{bad:?}");
        }
        // portcullis_auth_decisions_total{policy="apps/keys"}: 3 let
        // through, 5 refused, as the registry exposes them.
        let text = portcullis_obs::render();
        for (outcome, n) in [("allowed", 3), ("denied", 5), ("invalid", 0)] {
            let series = format!(
                "portcullis_auth_decisions_total{{policy=\"apps/keys\",outcome=\"{outcome}\"}} {n}\n"
            );
            assert!(text.contains(&series), "{series} in {text}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn authorization_uses_the_peer_address_not_x_forwarded_for() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let rules = |cidr: &str, allow: bool| Authorization {
            default_allow: !allow,
            rules: vec![AuthorizationRule {
                name: "peer".into(),
                allow,
                client_cidrs: vec![cidr.into()],
                jwt: None,
                headers: vec![],
            }],
        };
        let header_rule = Authorization {
            default_allow: false,
            rules: vec![AuthorizationRule {
                name: "team".into(),
                allow: true,
                client_cidrs: vec![],
                jwt: None,
                headers: vec![("x-team".into(), vec!["blue".into(), "green".into()])],
            }],
        };
        let r = |path: &str, a: Authorization| {
            secured(
                rule(path, prefix(path), vec![wb(1, e.backend())]),
                Security {
                    authorization: Some(a),
                    ..policy()
                },
            )
        };
        let (_dp, addr) = serve(vec![
            r("/loopback-allowed", rules("127.0.0.0/8", true)),
            r("/office-only", rules("10.0.0.0/8", true)),
            r("/loopback-denied", rules("127.0.0.1/32", false)),
            r("/team", header_rule),
        ])
        .await;
        assert_eq!(get_with(addr, "/loopback-allowed", &[]).await.status, 200);
        let spoof = [
            ("x-forwarded-for", "10.1.2.3"),
            ("x-real-ip", "10.1.2.3"),
            ("forwarded", "for=10.1.2.3"),
        ];
        let g = get_with(addr, "/office-only", &spoof).await;
        assert_eq!(g.status, 403);
        assert_eq!(&g.body[..], b"RBAC: access denied\n");
        assert_eq!(get_with(addr, "/loopback-denied", &spoof).await.status, 403);
        assert_eq!(
            get_with(addr, "/team", &[("x-team", "green")]).await.status,
            200
        );
        assert_eq!(
            get_with(addr, "/team", &[("x-team", "red")]).await.status,
            403
        );
        assert_eq!(get_with(addr, "/team", &[]).await.status, 403);
    })
    .await
    .unwrap();
}

/// An HTTP authorization service: `authorization: Bearer good` is allowed
/// (200, `x-auth-user: alice`), `x-slow` sleeps 2 s, anything else gets 401.
async fn auth_service() -> (
    SocketAddr,
    Arc<Mutex<Vec<Value>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let headers: serde_json::Map<String, Value> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                            .collect();
                        s.lock().unwrap().push(json!({"method": req.method().as_str(), "path": req.uri().to_string(), "headers": headers}));
                        if h("x-slow").is_some() {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let resp = if h("authorization").as_deref() == Some("Bearer good") {
                            hyper::Response::builder()
                                .status(200)
                                .header("x-auth-user", "alice")
                                .header("x-not-copied", "1")
                                .body(Full::new(Bytes::new()))
                        } else {
                            hyper::Response::builder()
                                .status(401)
                                .header("www-authenticate", "Custom realm=\"ext\"")
                                .header("x-ext", "denied")
                                .body(Full::new(Bytes::from_static(b"denied by ext\n")))
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
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

fn ext(addr: SocketAddr, fail_open: bool, timeout_ms: u64) -> ExtAuth {
    ExtAuth {
        backend: service("auth", &[addr], None),
        grpc: false,
        body_max_bytes: None,
        path_prefix: "/check".into(),
        headers_to_ext_auth: vec!["x-tenant".into(), "x-slow".into()],
        headers_to_backend: vec!["x-auth-user".into()],
        timeout_ms,
        fail_open,
    }
}

#[tokio::test]
async fn ext_auth_over_http() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (auth, seen, task) = auth_service().await;
        let dead = free_addr();
        let r = |path: &str, x: ExtAuth| {
            secured(
                rule(path, prefix(path), vec![wb(1, e.backend())]),
                Security {
                    ext_auth: Some(x),
                    ..policy()
                },
            )
        };
        let (_dp, addr) = serve(vec![
            r("/app", ext(auth, false, 500)),
            r("/closed", ext(dead, false, 500)),
            r("/open", ext(dead, true, 500)),
        ])
        .await;
        let g = get_with(
            addr,
            "/app/x?y=1",
            &[
                ("authorization", "Bearer good"),
                ("x-tenant", "t1"),
                ("x-auth-user", "mallory"),
                ("x-secret", "s"),
            ],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.echoed("x-auth-user").as_deref(), Some("alice"));
        assert_eq!(g.echoed("x-not-copied"), None);
        let check = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(check["path"], "/check/app/x?y=1");
        assert_eq!(check["method"], "GET");
        assert_eq!(check["headers"]["x-tenant"], "t1");
        assert_eq!(check["headers"]["host"], "h");
        assert!(
            check["headers"].get("x-secret").is_none(),
            "only the listed headers are sent"
        );
        // Denied: the service's answer goes back to the client.
        let g = get_with(addr, "/app", &[("authorization", "Bearer bad")]).await;
        assert_eq!(g.status, 401);
        assert_eq!(g.header("x-ext"), Some("denied"));
        assert_eq!(g.header("www-authenticate"), Some("Custom realm=\"ext\""));
        assert_eq!(&g.body[..], b"denied by ext\n");
        // Timeout: fail closed.
        let g = get_with(
            addr,
            "/app",
            &[("authorization", "Bearer good"), ("x-slow", "1")],
        )
        .await;
        assert_eq!(g.status, 403);
        // Service down: closed → 403, failOpen → through.
        assert_eq!(get_with(addr, "/closed", &[]).await.status, 403);
        assert_eq!(get_with(addr, "/open", &[]).await.status, 200);
        task.abort();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn cors_preflight_only_where_configured_and_never_skips_auth() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let basic = || BasicAuth {
            htpasswd: SecretString(include_str!("fixtures/htpasswd").into()),
            forward_username_header: None,
        };
        let with_cors = Security {
            cors: Some(Cors {
                allow_origins: vec!["https://app.example".into()],
                allow_methods: vec!["GET".into(), "POST".into()],
                allow_headers: vec!["authorization".into()],
                max_age: Some(600),
                ..Cors::default()
            }),
            basic: Some(basic()),
            ..policy()
        };
        let without_cors = Security {
            basic: Some(basic()),
            ..policy()
        };
        let (_dp, addr) = serve(vec![
            secured(
                rule("c", prefix("/cors"), vec![wb(1, e.backend())]),
                with_cors,
            ),
            secured(
                rule("n", prefix("/plain"), vec![wb(1, e.backend())]),
                without_cors,
            ),
        ])
        .await;
        let pre = [
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ];
        let g = send(&client(), addr, "OPTIONS", "h", "/cors", &pre).await;
        assert!(g.status == 200 || g.status == 204, "{}", g.status);
        assert_eq!(
            g.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(e.count(), 0, "a preflight never reaches the backend");
        // Not a preflight: authentication applies.
        assert_eq!(
            send(&client(), addr, "OPTIONS", "h", "/cors", &[])
                .await
                .status,
            401
        );
        // No CORS in the policy: a preflight is authenticated like anything else.
        assert_eq!(
            send(&client(), addr, "OPTIONS", "h", "/plain", &pre)
                .await
                .status,
            401
        );
        // An actual request from an allowed origin gets the CORS headers with the backend's answer.
        let g = get_with(
            addr,
            "/cors",
            &[
                ("origin", "https://app.example"),
                ("authorization", &basic_header("bob", "b0b-secret")),
            ],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(
            g.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        // A denial to an allowed origin carries the CORS headers too, so the
        // page can read the 401 (and its WWW-Authenticate).
        let g = get_with(addr, "/cors", &[("origin", "https://app.example")]).await;
        assert_eq!(g.status, 401);
        assert_eq!(
            g.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let g = get_with(addr, "/cors", &[("origin", "https://evil.example")]).await;
        assert_eq!(g.status, 401);
        assert_eq!(g.header("access-control-allow-origin"), None);
    })
    .await
    .unwrap();
}

/// What authentication protects is what routing matched and what is
/// forwarded: every spelling of `/admin` is authenticated, and a request that
/// reaches the public backend is forwarded with a path outside `/admin`.
#[tokio::test]
async fn protected_prefix_holds_for_every_path_spelling() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let admin = Echo::start("admin").await;
        let public = Echo::start("public").await;
        let sec = Security {
            basic: Some(BasicAuth {
                htpasswd: SecretString(include_str!("fixtures/htpasswd").into()),
                forward_username_header: None,
            }),
            ..policy()
        };
        let (_dp, addr) = serve(vec![
            secured(
                rule("admin", prefix("/admin"), vec![wb(1, admin.backend())]),
                sec,
            ),
            rule("public", prefix("/"), vec![wb(1, public.backend())]),
        ])
        .await;
        let paths = [
            "/admin",
            "/admin/",
            "/admin/x",
            "/%61dmin",
            "/%2e%2e/admin",
            "/public/../admin",
            "/public/%2e%2e/admin/x",
            "/./admin",
            "/public/%2E%2E/%2e%2e/admin",
            "//admin",
            "/admin%2fx",
            "/%2fadmin",
            "/admin;x",
            "/;/admin",
            "/admin\\x",
            "/\\admin",
            "/ADMIN",
            "/admin%00",
        ];
        for p in paths {
            let req = format!("GET {p} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
            let (resp, _) = raw(addr, req.as_bytes()).await;
            let status: u16 = resp
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            match status {
                401 => {}
                400 => {}
                200 => {
                    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
                    let v: Value = serde_json::from_str(body.trim())
                        .unwrap_or_else(|e| panic!("{p}: {e}: {resp}"));
                    assert_eq!(
                        v["backend"], "public",
                        "{p} reached the admin backend without credentials"
                    );
                    let fwd = v["path"].as_str().unwrap();
                    assert!(
                        !(fwd == "/admin" || fwd.starts_with("/admin/")),
                        "{p} was forwarded to the public backend as {fwd}"
                    );
                }
                s => panic!("{p}: unexpected status {s}: {resp}"),
            }
        }
        assert_eq!(admin.count(), 0);
        // And with credentials the admin backend is reached with the canonical path.
        let g = get_with(
            addr,
            "/public/%2e%2e/admin/x",
            &[("authorization", &basic_header("bob", "b0b-secret"))],
        )
        .await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["backend"], "admin");
        assert_eq!(g.json()["path"], "/admin/x");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_policy_fails_closed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let sec = Security {
            invalid: Some("Secret apps/missing does not exist".into()),
            policy: "apps/invalid".into(),
            ..policy()
        };
        let (_dp, addr) = serve(vec![secured(
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            sec,
        )])
        .await;
        assert_eq!(get_with(addr, "/", &[]).await.status, 500);
        assert_eq!(e.count(), 0);
        let stats = portcullis_obs::metrics().auth("apps/invalid");
        assert_eq!((stats.invalid.get(), stats.denied.get()), (1, 0));
    })
    .await
    .unwrap();
}
