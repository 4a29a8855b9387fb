//! OIDC end to end over real sockets: an OpenID provider run by the test
//! (discovery, an auto-approving authorize endpoint, a token endpoint that
//! checks the client secret and the PKCE verifier, refresh grants, JWKS)
//! and a test browser that follows redirects and keeps cookies.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_ir::security::*;
use portcullis_ir::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const CLIENT: &str = "portcullis";
const SECRET: &str = "s3cret-value";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn query(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (dec(k), dec(v)))
        .collect()
}

fn dec(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A login the provider approved, waiting for its code to be redeemed.
struct Grant {
    challenge: String,
    nonce: String,
    redirect_uri: String,
}

#[derive(Default)]
struct ProviderState {
    grants: HashMap<String, Grant>,
    refresh: HashMap<String, ()>,
    issued: u64,
    /// Token endpoint calls: (grant_type, ok).
    calls: Vec<(String, bool)>,
}

struct Provider {
    addr: SocketAddr,
    state: Arc<Mutex<ProviderState>>,
    expires_in: Arc<AtomicU64>,
    /// ID-token faults: 1 wrong nonce, 2 wrong audience, 3 wrong issuer,
    /// 4 signed by a key not in the JWKS, 5 expired.
    fault: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn es256() -> (EncodingKey, Value) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw().to_vec();
    (
        EncodingKey::from_ec_der(&kp.serialize_der()),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}]}),
    )
}

fn respond(status: u16, headers: &[(&str, String)], body: String) -> hyper::Response<Full<Bytes>> {
    let mut b = hyper::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

impl Provider {
    async fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let (key, jwks) = es256();
        let key = Arc::new(key);
        let state: Arc<Mutex<ProviderState>> = Arc::default();
        let expires_in = Arc::new(AtomicU64::new(3600));
        let fault = Arc::new(AtomicU64::new(0));
        let other_key = Arc::new(es256().0);
        let (st, exp, flt) = (state.clone(), expires_in.clone(), fault.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (st, exp, key, jwks, issuer, flt, other_key) = (
                    st.clone(),
                    exp.clone(),
                    key.clone(),
                    jwks.clone(),
                    issuer.clone(),
                    flt.clone(),
                    other_key.clone(),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (st, exp, key, jwks, issuer, flt, other_key) = (
                            st.clone(),
                            exp.clone(),
                            key.clone(),
                            jwks.clone(),
                            issuer.clone(),
                            flt.clone(),
                            other_key.clone(),
                        );
                        async move {
                            let path = req.uri().path().to_string();
                            let url = req.uri().to_string();
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_string());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let r = match path.as_str() {
                                "/.well-known/openid-configuration" => respond(200, &[], json!({
                                    "issuer": issuer,
                                    "authorization_endpoint": format!("{issuer}/authorize"),
                                    "token_endpoint": format!("{issuer}/token"),
                                    "jwks_uri": format!("{issuer}/jwks"),
                                    "end_session_endpoint": format!("{issuer}/end"),
                                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                                }).to_string()),
                                "/jwks" => respond(200, &[], jwks.to_string()),
                                "/authorize" => {
                                    let q = query(&url);
                                    assert_eq!(q["response_type"], "code");
                                    assert_eq!(q["client_id"], CLIENT);
                                    assert_eq!(q["code_challenge_method"], "S256");
                                    assert!(q["scope"].split(' ').any(|s| s == "openid"));
                                    let mut s = st.lock().unwrap();
                                    s.issued += 1;
                                    let code = format!("code-{}", s.issued);
                                    s.grants.insert(code.clone(), Grant {
                                        challenge: q["code_challenge"].clone(),
                                        nonce: q["nonce"].clone(),
                                        redirect_uri: q["redirect_uri"].clone(),
                                    });
                                    let loc = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
                                    respond(302, &[("location", loc)], String::new())
                                }
                                "/token" => {
                                    let f = query(&format!("?{}", String::from_utf8_lossy(&body)));
                                    let basic = format!("Basic {}", STANDARD.encode(format!("{CLIENT}:{SECRET}")));
                                    let mut s = st.lock().unwrap();
                                    let grant = f.get("grant_type").cloned().unwrap_or_default();
                                    let nonce = match grant.as_str() {
                                        _ if auth.as_deref() != Some(basic.as_str()) => None,
                                        "authorization_code" => s.grants.remove(&f["code"]).and_then(|g| {
                                            let ok = B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, f["code_verifier"].as_bytes())) == g.challenge
                                                && g.redirect_uri == f["redirect_uri"];
                                            ok.then_some(Some(g.nonce))
                                        }),
                                        "refresh_token" => s.refresh.contains_key(&f["refresh_token"]).then_some(None),
                                        _ => None,
                                    };
                                    s.calls.push((grant, nonce.is_some()));
                                    match nonce {
                                        None => respond(400, &[], json!({"error": "invalid_grant"}).to_string()),
                                        Some(nonce) => {
                                            s.issued += 1;
                                            let n = s.issued;
                                            s.refresh.insert(format!("rt-{n}"), ());
                                            let mut h = Header::new(Algorithm::ES256);
                                            h.kid = Some("k1".into());
                                            let mut claims = json!({"iss": issuer, "aud": CLIENT, "sub": "alice",
                                                "exp": now() + 3600, "iat": now()});
                                            if let Some(nonce) = nonce {
                                                claims["nonce"] = json!(nonce);
                                            }
                                            let mut signer = &*key;
                                            match flt.load(Ordering::SeqCst) {
                                                1 => claims["nonce"] = json!("other"),
                                                2 => claims["aud"] = json!("someone-else"),
                                                3 => claims["iss"] = json!("http://evil.example"),
                                                4 => signer = &*other_key,
                                                5 => claims["exp"] = json!(now() - 600),
                                                _ => {}
                                            }
                                            let id = jsonwebtoken::encode(&h, &claims, signer).unwrap();
                                            respond(200, &[("content-type", "application/json".into())], json!({
                                                "access_token": format!("at-{n}"), "token_type": "Bearer",
                                                "refresh_token": format!("rt-{n}"), "id_token": id,
                                                "expires_in": exp.load(Ordering::SeqCst),
                                            }).to_string())
                                        }
                                    }
                                }
                                _ => respond(404, &[], String::new()),
                            };
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Provider {
            addr,
            state,
            expires_in,
            fault,
            task,
        }
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A browser: cookies by name (one site), no automatic redirects.
#[derive(Default)]
struct Browser {
    jar: BTreeMap<String, String>,
}

impl Browser {
    async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Got {
        let mut b = ::http::Request::get(url);
        if !self.jar.is_empty() {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b = b.header("cookie", c.join("; "));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(20),
            client().request(b.body(Full::new(Bytes::new())).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        let (parts, body) = resp.into_parts();
        for sc in parts.headers.get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (kv, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_string(), v.to_string());
            }
        }
        Got {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    /// Browse to `url`, following redirects (relative ones against `base`).
    async fn browse(&mut self, base: &str, url: &str) -> (Got, Vec<String>) {
        let mut url = url.to_string();
        let mut visited = vec![];
        for _ in 0..10 {
            visited.push(url.clone());
            let g = self
                .get(&url, &[("accept", "text/html,application/xhtml+xml")])
                .await;
            if g.status != 302 {
                return (g, visited);
            }
            let loc = g.header("location").unwrap().to_string();
            url = if loc.starts_with('/') {
                format!("{base}{loc}")
            } else {
                loc
            };
        }
        panic!("redirect loop: {visited:?}");
    }

    fn session(&self) -> Option<(String, String)> {
        self.jar
            .iter()
            .find(|(k, _)| k.starts_with("portcullis-oidc-") && !k.contains("login"))
            .map(|(k, v)| (k.clone(), v.clone()))
    }
}

fn oidc(p: &Provider, secret: &str, redirect_url: Option<String>) -> Oidc {
    Oidc {
        issuer: p.issuer(),
        authorization_endpoint: None,
        token_endpoint: None,
        client_id: CLIENT.into(),
        client_secret: SecretString(secret.into()),
        session_key: None,
        scopes: vec!["openid".into(), "email".into()],
        redirect_url,
        logout_path: "/logout".into(),
        forward_access_token: true,
        refresh_token: true,
        cookie_domain: None,
        deny_redirect: vec![HeaderMatch {
            name: "x-requested-with".into(),
            kind: StringMatchKind::Exact,
            value: "XMLHttpRequest".into(),
        }],
    }
}

fn secured(path: &str, e: &Echo, o: Oidc) -> HttpRouteRule {
    let mut r = rule(path, prefix(path), vec![wb(1, e.backend())]);
    r.action.security = Some(Arc::new(Security {
        policy: format!("apps/oidc{}", path.replace('/', "-")),
        oidc: Some(o),
        ..Security::default()
    }));
    r
}

#[tokio::test]
async fn oidc_login_session_api_tamper_logout_and_refresh() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let p = Provider::start().await;
        // The `/bad` policy's redirect URL names the gateway's address, known
        // once it is bound: apply again with it.
        let (dp, addr) = serve(vec![secured("/", &e, oidc(&p, SECRET, None))]).await;
        let report = dp
            .apply(config(
                addr,
                vec![listener(
                    "l",
                    None,
                    vec![
                        secured("/", &e, oidc(&p, SECRET, None)),
                        secured(
                            "/bad",
                            &e,
                            oidc(&p, "wrong", Some(format!("http://{addr}/bad/callback"))),
                        ),
                    ],
                )],
            ))
            .await;
        assert!(report.bind_errors.is_empty());
        let base = format!("http://{addr}");
        let mut b = Browser::default();

        // Not logged in: 302 to the provider, which sends the browser back
        // with a code; the callback sets the session and returns to the page.
        let first = b
            .get(&format!("{base}/app/page?x=1"), &[("accept", "text/html")])
            .await;
        assert_eq!(first.status, 302);
        let loc = first.header("location").unwrap();
        assert!(
            loc.starts_with(&format!("{}/authorize?", p.issuer())),
            "{loc}"
        );
        let q = query(loc);
        assert_eq!(q["redirect_uri"], format!("{base}/oauth2/callback"));
        assert_eq!(q["scope"], "openid email");
        assert_eq!(q["code_challenge"].len(), 43);
        assert!(first.header("cache-control").is_some());
        let (g, visited) = b.browse(&base, &format!("{base}/app/page?x=1")).await;
        assert_eq!(g.status, 200, "{visited:?} {:?}", g.body);
        assert_eq!(visited.len(), 4, "{visited:?}");
        assert!(visited[2].starts_with(&format!("{base}/oauth2/callback?code=")));
        assert_eq!(visited[3], format!("{base}/app/page?x=1"));
        assert_eq!(g.echoed("authorization").as_deref(), Some("Bearer at-2"));
        assert_eq!(g.json()["path"], "/app/page?x=1");
        let (name, value) = b.session().expect("session cookie");
        assert!(!value.contains("at-2"), "the session cookie is encrypted");
        assert!(
            !b.jar.keys().any(|k| k.contains("login")),
            "login cookie cleared"
        );

        // Other cookies reach the backend, the gateway's do not.
        b.jar.insert("theme".into(), "dark".into());
        let g = b
            .get(&format!("{base}/app"), &[("accept", "application/json")])
            .await;
        assert_eq!(g.status, 200, "an API request with a session passes");
        assert_eq!(g.echoed("cookie").as_deref(), Some("theme=dark"));

        // API requests without a session: 401, never a redirect.
        let mut anon = Browser::default();
        let g = anon
            .get(&format!("{base}/app"), &[("accept", "application/json")])
            .await;
        assert_eq!(g.status, 401);
        assert_eq!(anon.get(&format!("{base}/app"), &[]).await.status, 401);
        let g = anon
            .get(
                &format!("{base}/app"),
                &[
                    ("accept", "text/html"),
                    ("x-requested-with", "XMLHttpRequest"),
                ],
            )
            .await;
        assert_eq!(g.status, 401, "denyRedirect");

        // A forged or tampered session restarts the login.
        let mut forged = Browser::default();
        let mut raw = B64.decode(&value).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 1;
        forged.jar.insert(name.clone(), B64.encode(&raw));
        let g = forged
            .get(&format!("{base}/app"), &[("accept", "text/html")])
            .await;
        assert_eq!(g.status, 302);
        assert!(g.header("location").unwrap().starts_with(&p.issuer()));
        forged.jar.insert(name.clone(), "not-a-session".into());
        let g = forged
            .get(&format!("{base}/app"), &[("accept", "application/json")])
            .await;
        assert_eq!(g.status, 401);

        // A callback without its login state, or with another state: 401.
        let g = anon
            .get(&format!("{base}/oauth2/callback?code=code-1&state=x"), &[])
            .await;
        assert_eq!(g.status, 401);

        // A wrong client secret: the token endpoint refuses, the callback is 401.
        let mut bad = Browser::default();
        let (g, _) = bad.browse(&base, &format!("{base}/bad/x")).await;
        assert_eq!(g.status, 401);
        assert_eq!(
            p.state.lock().unwrap().calls.last().cloned(),
            Some(("authorization_code".into(), false))
        );

        // Every bad ID token fails the login.
        for fault in 1..=5 {
            p.fault.store(fault, Ordering::SeqCst);
            let mut v = Browser::default();
            let (g, visited) = v.browse(&base, &format!("{base}/v")).await;
            assert_eq!(g.status, 401, "fault {fault}: {visited:?}");
            assert!(v.session().is_none());
        }
        p.fault.store(0, Ordering::SeqCst);

        // Logout clears the session and goes to the provider's end_session_endpoint.
        let g = b
            .get(&format!("{base}/logout"), &[("accept", "text/html")])
            .await;
        assert_eq!(g.status, 302);
        assert_eq!(
            g.header("location"),
            Some(format!("{}/end?client_id={CLIENT}", p.issuer()).as_str())
        );
        assert!(b.session().is_none());
        let g = b
            .get(&format!("{base}/app"), &[("accept", "text/html")])
            .await;
        assert_eq!(g.status, 302, "logged out: login again");

        // An expired access token is refreshed with the refresh token.
        p.expires_in.store(1, Ordering::SeqCst);
        let mut r = Browser::default();
        let (g, _) = r.browse(&base, &format!("{base}/r")).await;
        assert_eq!(g.status, 200);
        let first_token = g.echoed("authorization").unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        p.expires_in.store(3600, Ordering::SeqCst);
        let before = r.session().unwrap();
        let g = r
            .get(&format!("{base}/r"), &[("accept", "application/json")])
            .await;
        assert_eq!(g.status, 200);
        let refreshed = g.echoed("authorization").unwrap();
        assert_ne!(refreshed, first_token);
        assert_eq!(
            p.state.lock().unwrap().calls.last().cloned(),
            Some(("refresh_token".into(), true))
        );
        assert_ne!(
            r.session().unwrap(),
            before,
            "the refreshed session rides on the response"
        );
        let g = r
            .get(&format!("{base}/r"), &[("accept", "application/json")])
            .await;
        assert_eq!(
            g.echoed("authorization").unwrap(),
            refreshed,
            "no second refresh"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_session_sealed_by_another_replica_opens_with_the_shared_session_key() {
    use portcullis_dataplane::auth::session::{SessionKey, short_hash};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let p = Provider::start().await;
        let shared = "a-session-key-of-at-least-32-bytes!";
        let mut o = oidc(&p, SECRET, None);
        o.session_key = Some(SecretString(shared.into()));
        let (_dp, addr) = serve(vec![secured("/", &e, o)]).await;
        let name = format!(
            "portcullis-oidc-{}",
            short_hash(&format!("apps/oidc-\n{}\n{CLIENT}", p.issuer()))
        );
        let session = json!({"at": "at-from-replica-b", "exp": now() + 600}).to_string();
        let base = format!("http://{addr}");
        // Sealed with the key every replica derives from the Secret: accepted.
        let mut b = Browser::default();
        b.jar.insert(
            name.clone(),
            SessionKey::from_secret(shared.as_bytes()).seal(&name, session.as_bytes()),
        );
        let g = b
            .get(&format!("{base}/x"), &[("accept", "application/json")])
            .await;
        assert_eq!(g.status, 200);
        assert_eq!(
            g.echoed("authorization").as_deref(),
            Some("Bearer at-from-replica-b")
        );
        // Sealed with another key (another replica's process key): not a session.
        b.jar.insert(
            name.clone(),
            SessionKey::process().seal(&name, session.as_bytes()),
        );
        let g = b
            .get(&format!("{base}/x"), &[("accept", "application/json")])
            .await;
        assert_eq!(g.status, 401);
    })
    .await
    .unwrap();
}
