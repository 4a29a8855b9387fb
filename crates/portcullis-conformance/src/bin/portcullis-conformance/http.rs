//! Request/response expectations of upstream `utils/http/http.go`:
//! MakeRequestAndExpectEventuallyConsistentResponse, CompareRoundTrip,
//! AwaitConvergence and MakeRequestAndExpectFailure.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::roundtrip::{
    CapturedRequest, CapturedResponse, RedirectRequest, RtRequest, capture_round_trip, is_redirect,
    is_timeout_error,
};
use crate::suite::Ctx;

/// The request to make (and, by default, the request expected at the backend).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub host: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub unfollow_redirect: bool,
    pub protocol: String,
    pub body: String,
    pub sni: String,
    pub client_cert: String,
}

#[derive(Debug, Clone, Default)]
pub struct ExpectedRequest {
    pub request: Request,
    pub absent_headers: Vec<String>,
    pub http_port: String,
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status_codes: Vec<u16>,
    pub headers: Vec<(String, String)>,
    pub valid_header_values: Vec<(String, Vec<String>)>,
    pub absent_headers: Vec<String>,
    pub protocol: String,
    pub ignore_whitespace: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ExpectedResponse {
    pub request: Request,
    pub expected_request: Option<ExpectedRequest>,
    pub redirect_request: Option<RedirectRequest>,
    pub backend_set_response_headers: Vec<(String, String)>,
    pub response: Response,
    pub backend: String,
    pub namespace: String,
    pub test_case_name: String,
}

#[cfg(test)]
pub fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// upstream CalculateHost: drop the port when implied by the scheme.
pub fn calculate_host(gw_addr: &str, scheme: &str) -> String {
    let Some((host, port)) = gw_addr.rsplit_once(':') else {
        return gw_addr.to_string();
    };
    if host.contains(':') && !host.starts_with('[') {
        // Bare IPv6 without port.
        return format!("[{gw_addr}]");
    }
    let scheme = scheme.to_ascii_lowercase();
    if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
        return host.to_string();
    }
    gw_addr.to_string()
}

impl ExpectedResponse {
    /// Upstream GetTestCaseName.
    pub fn case_name(&self, i: usize) -> String {
        if !self.test_case_name.is_empty() {
            return self.test_case_name.clone();
        }
        let with_headers = if self.request.headers.is_empty() {
            ""
        } else {
            " with headers"
        };
        let req = format!(
            "{i} request to '{}{}'{with_headers}",
            self.request.host, self.request.path
        );
        if !self.backend.is_empty() {
            format!("{req} should go to {}", self.backend)
        } else {
            format!(
                "{req} should receive one of {:?}",
                self.response.status_codes
            )
        }
    }
}

/// upstream MakeRequest: fills defaults into `expected` and builds the request.
pub fn make_request(
    ctx: &Ctx,
    expected: &mut ExpectedResponse,
    gw_addr: &str,
    protocol: &str,
    scheme: &str,
) -> Result<RtRequest> {
    if expected.request.method.is_empty() {
        expected.request.method = "GET".into();
    }
    if expected.response.status_codes.is_empty() {
        expected.response.status_codes = vec![200];
    }
    if expected.request.protocol.is_empty() {
        expected.request.protocol = protocol.into();
    }
    let (path, query) = match expected.request.path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (expected.request.path.clone(), None),
    };
    let mut url = url::Url::parse(&format!("{scheme}://{}/", calculate_host(gw_addr, scheme)))?;
    url.set_path(&path);
    url.set_query(query.as_deref());
    let mut headers = expected.request.headers.clone();
    let set: Vec<String> = expected
        .backend_set_response_headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    headers.push(("X-Echo-Set-Header".into(), set.join(",")));
    Ok(RtRequest {
        url,
        host: expected.request.host.clone(),
        protocol: expected.request.protocol.clone(),
        method: expected.request.method.clone(),
        headers,
        unfollow_redirect: expected.request.unfollow_redirect,
        body: expected.request.body.clone(),
        timeout: ctx.request_timeout,
        ..Default::default()
    })
}

fn lower_map(
    map: &std::collections::BTreeMap<String, Vec<String>>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    map.iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// upstream CompareRoundTrip.
pub fn compare_round_trip(
    req: &RtRequest,
    creq: &CapturedRequest,
    cres: &CapturedResponse,
    expected: &ExpectedResponse,
) -> Result<(), String> {
    let codes = &expected.response.status_codes;
    if is_timeout_error(cres.status_code) && codes.iter().any(|c| is_timeout_error(*c)) {
        return Ok(());
    }
    if !codes.contains(&cres.status_code) {
        return Err(format!(
            "expected status code to be one of {codes:?}, got {}",
            cres.status_code
        ));
    }
    if !expected.response.protocol.is_empty() && expected.response.protocol != cres.protocol {
        return Err(format!(
            "expected protocol to be {}, got {}",
            expected.response.protocol, cres.protocol
        ));
    }
    if cres.status_code == 200 || cres.status_code == 204 {
        let mut exp_req = expected
            .expected_request
            .clone()
            .unwrap_or(ExpectedRequest {
                request: expected.request.clone(),
                ..Default::default()
            });
        if exp_req.request.method.is_empty() {
            exp_req.request.method = "GET".into();
        }
        let e = &exp_req.request;
        if !e.host.is_empty() && e.host != creq.host {
            return Err(format!("expected host to be {}, got {}", e.host, creq.host));
        }
        if e.path != creq.path {
            return Err(format!("expected path to be {}, got {}", e.path, creq.path));
        }
        if e.method != creq.method {
            return Err(format!(
                "expected method to be {}, got {}",
                e.method, creq.method
            ));
        }
        if expected.namespace != creq.namespace {
            return Err(format!(
                "expected namespace to be {}, got {}",
                expected.namespace, creq.namespace
            ));
        }
        let req_headers = lower_map(&creq.headers);
        for (name, want) in &e.headers {
            match req_headers.get(&name.to_ascii_lowercase()) {
                None => {
                    return Err(format!(
                        "expected {name} header to be set, actual headers: {:?}",
                        creq.headers
                    ));
                }
                Some(got) if got.join(",") != *want => {
                    return Err(format!(
                        "expected {name} header to be set to {want}, got {}",
                        got.join(",")
                    ));
                }
                _ => {}
            }
        }
        if !exp_req.http_port.is_empty() && exp_req.http_port != creq.http_port {
            return Err(format!(
                "expected httpPort {:?}, got {:?}",
                exp_req.http_port, creq.http_port
            ));
        }
        let res_headers = lower_map(&cres.headers);
        let strip = |s: &str| {
            if expected.response.ignore_whitespace {
                s.replace(' ', "")
            } else {
                s.to_string()
            }
        };
        for (name, valid) in &expected.response.valid_header_values {
            let Some(got) = res_headers.get(&name.to_ascii_lowercase()) else {
                return Err(format!(
                    "expected {name} header to be set, actual headers: {:?}",
                    cres.headers
                ));
            };
            let got = strip(&got.join(","));
            if !valid.iter().any(|v| strip(v) == got) {
                return Err(format!(
                    "expected {name} header to be set to one of {valid:?}, got {got}"
                ));
            }
        }
        for (name, want) in &expected.response.headers {
            let Some(got) = res_headers.get(&name.to_ascii_lowercase()) else {
                return Err(format!(
                    "expected {name} header to be set, actual headers: {:?}",
                    cres.headers
                ));
            };
            let got = strip(&got.join(","));
            if got != strip(want) {
                return Err(format!(
                    "expected {name} header to be set to {want}, got {got}"
                ));
            }
        }
        for name in &expected.response.absent_headers {
            if let Some(v) = res_headers.get(&name.to_ascii_lowercase()) {
                return Err(format!("expected {name} header to not be set, got {v:?}"));
            }
        }
        for name in &exp_req.absent_headers {
            if let Some(v) = req_headers.get(&name.to_ascii_lowercase()) {
                return Err(format!("expected {name} header to not be set, got {v:?}"));
            }
        }
        if !creq.pod.starts_with(&expected.backend) {
            return Err(format!(
                "expected pod name to start with {}, got {}",
                expected.backend, creq.pod
            ));
        }
        let tls = creq.tls.clone().unwrap_or_default();
        if !e.sni.is_empty() && e.sni != tls.server_name {
            return Err(format!(
                "expected SNI {:?} to be equal to {:?}",
                tls.server_name, e.sni
            ));
        }
        if !e.client_cert.is_empty() && !tls.peer_certificates.contains(&e.client_cert) {
            return Err("expected client certificate was not captured".into());
        }
    } else if is_redirect(cres.status_code) {
        let Some(exp) = &expected.redirect_request else {
            return Ok(());
        };
        let got = cres.redirect_request.clone().unwrap_or_default();
        let mut exp = exp.clone();
        if exp.host.is_empty() {
            exp.host = got.host.clone();
        }
        if exp.scheme.is_empty() {
            exp.scheme = req.url.scheme().to_string();
        }
        if exp.path.is_empty() {
            exp.path = req.url.path().to_string();
        }
        if exp.host != got.host {
            return Err(format!(
                "expected redirected hostname to be {:?}, got {:?}",
                exp.host, got.host
            ));
        }
        let scheme = got.scheme.to_ascii_lowercase();
        if exp.port.is_empty() {
            if scheme == "http" && got.port != "80" && !got.port.is_empty() {
                return Err(format!(
                    "for http scheme, expected redirected port to be 80 or not set, got {:?}",
                    got.port
                ));
            }
            if scheme == "https" && got.port != "443" && !got.port.is_empty() {
                return Err(format!(
                    "for https scheme, expected redirected port to be 443 or not set, got {:?}",
                    got.port
                ));
            }
        } else if exp.port != got.port {
            return Err(format!(
                "expected redirected port to be {:?}, got {:?}",
                exp.port, got.port
            ));
        }
        if exp.scheme != got.scheme {
            return Err(format!(
                "expected redirected scheme to be {:?}, got {:?}",
                exp.scheme, got.scheme
            ));
        }
        if exp.path != got.path {
            return Err(format!(
                "expected redirected path to be {:?}, got {:?}",
                exp.path, got.path
            ));
        }
    }
    Ok(())
}

/// upstream AwaitConvergence: `f` must succeed `threshold` times in a row.
pub async fn await_convergence<F, Fut>(threshold: usize, max_time: Duration, mut f: F) -> Result<()>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut successes = 0;
    let mut attempts = 0;
    let mut last = String::new();
    loop {
        if start.elapsed() > max_time {
            bail!(
                "timeout after {attempts} attempts ({successes}/{threshold} consecutive successes): {last}"
            );
        }
        attempts += 1;
        match f(start.elapsed()).await {
            Ok(()) => {
                successes += 1;
                if successes >= threshold {
                    return Ok(());
                }
                continue;
            }
            Err(m) => {
                last = m;
                successes = 0;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// upstream WaitForConsistentResponse.
pub async fn wait_for_consistent_response(
    ctx: &Ctx,
    req: &RtRequest,
    expected: &ExpectedResponse,
) -> Result<()> {
    await_convergence(ctx.consecutive_successes, ctx.timeout, |_| async {
        match capture_round_trip(req).await {
            Err(e) => Err(format!("request failed: {e:#}")),
            Ok((creq, cres)) => compare_round_trip(req, &creq, &cres, expected),
        }
    })
    .await
}

/// upstream MakeRequestAndExpectEventuallyConsistentResponse.
pub async fn expect_response(ctx: &Ctx, gw_addr: &str, expected: &ExpectedResponse) -> Result<()> {
    let mut expected = expected.clone();
    let req = make_request(ctx, &mut expected, gw_addr, "HTTP", "http")?;
    wait_for_consistent_response(ctx, &req, &expected).await
}

/// Runs each case as upstream's subtests do, naming the failing case.
pub async fn expect_responses(ctx: &Ctx, gw_addr: &str, cases: &[ExpectedResponse]) -> Result<()> {
    for (i, case) in cases.iter().enumerate() {
        expect_response(ctx, gw_addr, case)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", case.case_name(i)))?;
    }
    Ok(())
}

/// upstream MakeRequestAndExpectFailure (five consecutive non-200 answers).
pub async fn expect_failure(ctx: &Ctx, gw_addr: &str, expected: &ExpectedResponse) -> Result<()> {
    let mut expected = expected.clone();
    let req = make_request(ctx, &mut expected, gw_addr, "HTTP", "http")?;
    let fatal: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
    let result = await_convergence(5, ctx.timeout, |_| {
        let req = &req;
        let fatal = &fatal;
        async move {
            if fatal.borrow().is_some() {
                return Ok(());
            }
            match capture_round_trip(req).await {
                Err(e) => Err(format!("request failed: {e:#}")),
                Ok((_, cres)) if is_timeout_error(cres.status_code) => {
                    Err(format!("status {}", cres.status_code))
                }
                Ok((_, cres)) if cres.status_code == 200 => {
                    *fatal.borrow_mut() = Some(format!(
                        "request to {} should fail, returned HTTP Status OK (200) instead",
                        req.url
                    ));
                    Ok(())
                }
                Ok(_) => Ok(()),
            }
        }
    })
    .await;
    if let Some(f) = fatal.into_inner() {
        bail!(f);
    }
    result
}

/// A test case for a request to `host` (may be empty) and `path`.
pub fn case(host: &str, path: &str) -> ExpectedResponse {
    ExpectedResponse {
        request: Request {
            host: host.into(),
            path: path.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Builder methods mirroring the fields of upstream's ExpectedResponse.
impl ExpectedResponse {
    /// Expected backend (pod name prefix) and namespace.
    pub fn to(mut self, backend: &str, namespace: &str) -> Self {
        self.backend = backend.into();
        self.namespace = namespace.into();
        self
    }
    pub fn code(mut self, code: u16) -> Self {
        self.response.status_codes = vec![code];
        self
    }
    pub fn codes(mut self, codes: &[u16]) -> Self {
        self.response.status_codes = codes.to_vec();
        self
    }
    pub fn ns(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request.headers.push((name.into(), value.into()));
        self
    }
    pub fn method(mut self, method: &str) -> Self {
        self.request.method = method.into();
        self
    }
    pub fn unfollow(mut self) -> Self {
        self.request.unfollow_redirect = true;
        self
    }
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.request.protocol = protocol.into();
        self
    }
    fn expected_request(&mut self) -> &mut ExpectedRequest {
        let base = self.request.clone();
        self.expected_request
            .get_or_insert_with(|| ExpectedRequest {
                request: Request {
                    host: base.host,
                    method: base.method,
                    path: base.path,
                    ..Default::default()
                },
                ..Default::default()
            })
    }
    /// Sets the expected request explicitly (fields not given stay empty).
    pub fn expect_req(mut self, host: &str, path: &str) -> Self {
        self.expected_request = Some(ExpectedRequest {
            request: Request {
                host: host.into(),
                path: path.into(),
                ..Default::default()
            },
            ..Default::default()
        });
        self
    }
    pub fn expect_header(mut self, name: &str, value: &str) -> Self {
        self.expected_request()
            .request
            .headers
            .push((name.into(), value.into()));
        self
    }
    pub fn expect_absent(mut self, names: &[&str]) -> Self {
        self.expected_request()
            .absent_headers
            .extend(names.iter().map(|s| s.to_string()));
        self
    }
    /// The SNI the backend must see (ExpectedRequest.SNI).
    pub fn expect_sni(mut self, sni: &str) -> Self {
        self.expected_request().request.sni = sni.into();
        self
    }
    /// Sets Request.SNI (also the default expected SNI).
    pub fn sni(mut self, sni: &str) -> Self {
        self.request.sni = sni.into();
        self
    }
    /// The client certificate PEM the backend must have been shown.
    pub fn expect_client_cert(mut self, pem: &str) -> Self {
        self.request.client_cert = pem.into();
        self
    }
    pub fn expect_method(mut self, method: &str) -> Self {
        self.expected_request().request.method = method.into();
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.test_case_name = name.into();
        self
    }
    pub fn resp_one_of(mut self, name: &str, values: &[&str]) -> Self {
        self.response
            .valid_header_values
            .push((name.into(), values.iter().map(|v| v.to_string()).collect()));
        self
    }
    pub fn ignore_whitespace(mut self) -> Self {
        self.response.ignore_whitespace = true;
        self
    }
    pub fn resp_header(mut self, name: &str, value: &str) -> Self {
        self.response.headers.push((name.into(), value.into()));
        self
    }
    pub fn resp_absent(mut self, names: &[&str]) -> Self {
        self.response
            .absent_headers
            .extend(names.iter().map(|s| s.to_string()));
        self
    }
    pub fn backend_sets(mut self, name: &str, value: &str) -> Self {
        self.backend_set_response_headers
            .push((name.into(), value.into()));
        self
    }
    pub fn redirect(mut self, scheme: &str, host: &str, port: &str, path: &str) -> Self {
        self.redirect_request = Some(RedirectRequest {
            scheme: scheme.into(),
            host: host.into(),
            port: port.into(),
            path: path.into(),
        });
        self
    }
}

/// upstream tls.MakeTLSRequestAndExpectEventuallyConsistentResponse.
pub async fn expect_tls_response(
    ctx: &Ctx,
    gw_addr: &str,
    server_cert: &str,
    client_cert: Option<(String, String)>,
    server_name: &str,
    expected: &ExpectedResponse,
) -> Result<()> {
    let mut expected = expected.clone();
    let mut req = make_request(
        ctx,
        &mut expected,
        gw_addr,
        crate::roundtrip::HTTPS,
        "https",
    )?;
    req.server_name = server_name.into();
    req.server_certificate = Some(server_cert.into());
    req.client_cert = client_cert;
    wait_for_consistent_response(ctx, &req, &expected).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calculate_host_drops_implied_ports() {
        assert_eq!(calculate_host("127.0.10.1:80", "http"), "127.0.10.1");
        assert_eq!(calculate_host("127.0.10.1:8080", "http"), "127.0.10.1:8080");
        assert_eq!(calculate_host("127.0.10.1:443", "https"), "127.0.10.1");
        assert_eq!(calculate_host("127.0.10.1", "http"), "127.0.10.1");
    }

    fn creq(path: &str, pod: &str) -> CapturedRequest {
        CapturedRequest {
            path: path.into(),
            method: "GET".into(),
            namespace: "ns".into(),
            pod: pod.into(),
            ..Default::default()
        }
    }

    fn cres(code: u16) -> CapturedResponse {
        CapturedResponse {
            status_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn compare_checks_path_backend_and_headers() {
        let req = RtRequest {
            url: url::Url::parse("http://1.2.3.4/a").unwrap(),
            ..Default::default()
        };
        let exp = ExpectedResponse {
            request: Request {
                path: "/a".into(),
                headers: headers(&[("X-A", "1")]),
                ..Default::default()
            },
            response: Response {
                status_codes: vec![200],
                absent_headers: strings(&["X-Gone"]),
                ..Default::default()
            },
            backend: "infra-backend-v1".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        let mut c = creq("/a", "infra-backend-v1-abc-def");
        c.headers.insert("X-A".into(), vec!["1".into()]);
        assert_eq!(compare_round_trip(&req, &c, &cres(200), &exp), Ok(()));
        let wrong_pod = {
            let mut c = c.clone();
            c.pod = "infra-backend-v2-x".into();
            c
        };
        assert!(compare_round_trip(&req, &wrong_pod, &cres(200), &exp).is_err());
        assert!(
            compare_round_trip(&req, &creq("/a", "infra-backend-v1-x"), &cres(200), &exp).is_err()
        );
        assert!(compare_round_trip(&req, &c, &cres(404), &exp).is_err());
        let mut with_absent = cres(200);
        with_absent
            .headers
            .insert("X-Gone".into(), vec!["x".into()]);
        assert!(compare_round_trip(&req, &c, &with_absent, &exp).is_err());
    }

    #[test]
    fn compare_checks_redirects() {
        let req = RtRequest {
            url: url::Url::parse("http://1.2.3.4/a").unwrap(),
            ..Default::default()
        };
        let exp = ExpectedResponse {
            response: Response {
                status_codes: vec![302],
                ..Default::default()
            },
            redirect_request: Some(RedirectRequest {
                host: "example.org".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut got = cres(302);
        got.redirect_request = Some(RedirectRequest {
            scheme: "http".into(),
            host: "example.org".into(),
            port: String::new(),
            path: "/a".into(),
        });
        assert_eq!(compare_round_trip(&req, &creq("", ""), &got, &exp), Ok(()));
        got.redirect_request.as_mut().unwrap().port = "8080".into();
        assert!(compare_round_trip(&req, &creq("", ""), &got, &exp).is_err());
    }
}
