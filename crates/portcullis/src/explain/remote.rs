//! `portcullis explain --admin URL`: the same question to a running
//! gateway's `/explain` (the admin address of `portcullis run`, the
//! `--dashboard` address of `portcullis controller`), answered on the
//! configuration it serves.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Percent-encode everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `/explain` URL for the request of `args` on `admin`.
fn url(admin: &str, args: &crate::cli::ExplainArgs, json: bool) -> String {
    let mut q = format!("request={}", encode(&args.request));
    for h in &args.headers {
        q.push_str(&format!("&header={}", encode(h)));
    }
    if let Some(g) = &args.gateway {
        q.push_str(&format!("&gateway={}", encode(g)));
    }
    if !json {
        q.push_str("&format=text");
    }
    format!("{}/explain?{q}", admin.trim_end_matches('/'))
}

/// Ask `admin` (an `http://` URL) and return its answer's body.
pub fn ask(
    admin: &str,
    token: Option<&str>,
    args: &crate::cli::ExplainArgs,
    json: bool,
) -> anyhow::Result<String> {
    if !admin.starts_with("http://") {
        anyhow::bail!("--admin {admin:?}: expected http://HOST:PORT");
    }
    let uri: http::Uri = url(admin, args, json).parse()?;
    let mut req = http::Request::get(uri);
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| anyhow::anyhow!("{admin}: no answer within 10 s"))??;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            anyhow::bail!("{admin}/explain answered {status}: {}", text.trim());
        }
        Ok(if text.ends_with('\n') {
            text
        } else {
            text + "\n"
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_carries_the_request_headers_and_gateway() {
        use clap::Parser;
        let cli = crate::cli::Cli::parse_from([
            "portcullis",
            "explain",
            "--admin",
            "http://127.0.0.1:9903/",
            "--gateway",
            "apps/edge",
            "GET http://shop.example.com/cart?x=1&y=2",
            "-H",
            "x-env: canary",
        ]);
        let crate::cli::Command::Explain(args) = cli.command else {
            panic!("explain")
        };
        assert_eq!(
            url(args.admin.as_deref().unwrap(), &args, false),
            "http://127.0.0.1:9903/explain?request=GET%20http%3A%2F%2Fshop.example.com%2Fcart%3Fx%3D1%26y%3D2\
             &header=x-env%3A%20canary&gateway=apps%2Fedge&format=text"
        );
    }
}
