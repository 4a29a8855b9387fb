//! Running the `portcullis` binary under test and talking to its admin API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::process::{Child, Command};

/// The running `portcullis run` process; killed (by its PID, through the handle)
/// when dropped.
pub struct Portcullis {
    child: Child,
    pub admin: SocketAddr,
    pub log_path: PathBuf,
}

impl Portcullis {
    pub async fn start(
        bin: &Path,
        config_dir: &Path,
        address_pool: &str,
        admin: SocketAddr,
        log_path: PathBuf,
    ) -> Result<Self> {
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config_dir)
            .arg("--address-pool")
            .arg(address_pool)
            .arg("--admin")
            .arg(admin.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Self {
            child,
            admin,
            log_path,
        })
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "portcullis exited ({status}) before becoming ready; log: {}",
                    self.log_path.display()
                );
            }
            if let Ok((200, _)) = get(self.admin, "/readyz").await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "portcullis not ready after {timeout:?}; log: {}",
                    self.log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// A plain HTTP/1.1 GET against the admin API.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, Bytes)> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("admin connect timeout")??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .context("admin request timeout")??;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `GET /status`: every Gateway API object with its status.
pub async fn status(addr: SocketAddr) -> Result<Vec<Value>> {
    let (code, body) = get(addr, "/status").await?;
    if code != 200 {
        bail!(
            "/status answered {code}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let v: Value = serde_json::from_slice(&body).context("parsing /status")?;
    match v {
        Value::Array(items) => Ok(items),
        other => bail!("/status is not an array: {other}"),
    }
}
