//! The proxy side of the stream: connect over TLS (trusting only the CA
//! bundle file, re-read on every attempt so a rotated CA is picked up),
//! authenticate, decode, and reconnect with exponential backoff and full
//! jitter whenever the stream ends.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rand::Rng;
use tokio::sync::mpsc;

use super::wire::{Decoder, Message, WIRE_HEADER, WIRE_VERSION};

/// Where and as whom to follow the stream.
#[derive(Clone, Debug)]
pub struct Follow {
    /// Controller base URL (`https://host:port`).
    pub controller: String,
    /// PEM file of the CA certificates the controller's certificate must chain to.
    pub ca_file: PathBuf,
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// File holding the bearer token (re-read on every attempt).
    pub token_file: PathBuf,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Largest retry delay.
    pub max_backoff: Duration,
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The token file cannot be read.
    #[error("cannot read the token {0}: {1}")]
    Token(PathBuf, std::io::Error),
    /// The CA bundle cannot be read or used.
    #[error("CA bundle {0}: {1}")]
    Ca(PathBuf, String),
    /// Connecting or reading failed.
    #[error("{0}")]
    Transport(String),
    /// The controller answered with an error status.
    #[error("controller answered {0}: {1}")]
    Refused(u16, String),
    /// A frame did not decode.
    #[error(transparent)]
    Decode(#[from] super::wire::DecodeError),
    /// The stream ended cleanly (controller shutting down).
    #[error("stream ended")]
    Ended,
}

/// Follow the stream forever, sending every message to `out`; returns when `out` is closed.
pub async fn follow(f: Follow, out: mpsc::Sender<Message>) {
    let mut delay = f.min_backoff;
    loop {
        let mut got_any = false;
        let res = once(&f, &out, &mut got_any).await;
        if out.is_closed() {
            return;
        }
        if got_any {
            delay = f.min_backoff;
        }
        let e = res.err().unwrap_or(FollowError::Ended);
        let wait = Duration::from_secs_f64(
            rand::rng()
                .random_range(0.0..=delay.as_secs_f64())
                .max(f.min_backoff.as_secs_f64() / 2.0),
        );
        tracing::warn!(gateway = %f.gateway, retry_in_ms = wait.as_millis() as u64, "config stream: {e}; keeping the last configuration");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = out.closed() => return,
        }
        delay = (delay * 2).min(f.max_backoff);
    }
}

fn transport(what: &str, e: impl std::fmt::Display) -> FollowError {
    FollowError::Transport(format!("{what}: {e}"))
}

async fn once(
    f: &Follow,
    out: &mpsc::Sender<Message>,
    got_any: &mut bool,
) -> Result<(), FollowError> {
    let token = std::fs::read_to_string(&f.token_file)
        .map_err(|e| FollowError::Token(f.token_file.clone(), e))?;
    let ca =
        std::fs::read(&f.ca_file).map_err(|e| FollowError::Ca(f.ca_file.clone(), e.to_string()))?;
    let tls = super::pki::client_config(&ca)
        .map_err(|e| FollowError::Ca(f.ca_file.clone(), e.to_string()))?;
    let (ns, name) = f.gateway.split_once('/').unwrap_or(("default", &f.gateway));
    let uri = format!(
        "{}/v1/config/{ns}/{name}",
        f.controller.trim_end_matches('/')
    );
    let parsed: http::Uri = uri.parse().map_err(|e| transport(&uri, e))?;
    let host = parsed
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = parsed.port_u16().unwrap_or(443);
    let server_name =
        rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| transport(&uri, e))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
    };
    let stream = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| transport(&format!("cannot reach {uri}"), "timed out"))?
        .map_err(|e| transport(&format!("cannot reach {uri}"), e))?;
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| transport(&format!("cannot reach {uri}"), e))?;
    let conn = tokio::spawn(conn);
    let _abort = AbortOnDrop(conn);
    let req = http::Request::get(&uri)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .header(WIRE_HEADER, WIRE_VERSION.to_string())
        .body(Empty::new())
        .map_err(|e| FollowError::Transport(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| transport(&format!("cannot reach {uri}"), e))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(FollowError::Refused(status.as_u16(), text));
    }
    let mut dec = Decoder::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FollowError::Transport(format!("stream broken: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for msg in dec.push(&data)? {
            *got_any = true;
            if out.send(msg).await.is_err() {
                return Ok(());
            }
        }
    }
    Err(FollowError::Ended)
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
