//! A WebDriver client for headless Chromium (`chromedriver` from `PATH`, or
//! `CHROMEDRIVER`; Chromium found by chromedriver or named by `CHROME_BIN`),
//! hand-written over HTTP/1.1: the dashboard tests drive a real browser.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Proc, free_port, wait_for};

/// One WebDriver command: `(HTTP status, JSON body)`.
pub fn wd(driver: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&driver, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {driver}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then the body by its framing (chromedriver may keep
    // the connection open).
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let body_start = loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "chromedriver closed before a response head");
        out.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&out[..body_start]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &out[body_start..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&out[body_start..]).into_owned();
    let payload = if chunked { dechunk(&rest) } else { rest };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v.iter().fold(0u32, |a, x| a << 6 | x) << (6 * (4 - v.len()));
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..v.len()]);
    }
    out
}

/// A headless Chromium session; the driver is stopped by its PID when dropped.
pub struct Browser {
    driver: SocketAddr,
    id: String,
    _proc: Proc,
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a session
    /// (`--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage`:
    /// as root in a container the sandbox and /dev/shm are not usable).
    pub fn start() -> Browser {
        let driver_port = free_port();
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&driver_bin)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_bin} ({e}): install chromium and chromium-driver \
                     (Debian) or set CHROMEDRIVER; this test needs a real browser"
                )
            });
        let proc = Proc(child);
        let driver: SocketAddr = format!("127.0.0.1:{driver_port}").parse().unwrap();
        wait_for("chromedriver", Duration::from_secs(20), || {
            TcpStream::connect(driver).is_ok() && wd(driver, "GET", "/status", None).0 == 200
        });
        let mut chrome = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--window-size=1280,1800"]});
        if let Ok(bin) = std::env::var("CHROME_BIN") {
            chrome["binary"] = json!(bin);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": chrome}}});
        let (status, session) = wd(driver, "POST", "/session", Some(&caps));
        assert_eq!(status, 200, "Chromium did not start: {session}");
        let id = session["value"]["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver,
            id,
            _proc: proc,
        }
    }

    fn path(&self, p: &str) -> String {
        format!("/session/{}{p}", self.id)
    }

    /// Navigate to `url`.
    pub fn open(&self, url: &str) {
        let (status, v) = wd(
            self.driver,
            "POST",
            &self.path("/url"),
            Some(&json!({"url": url})),
        );
        assert_eq!(status, 200, "{v}");
    }

    /// Run a script in the page; its return value.
    pub fn run(&self, script: &str) -> Value {
        let body = json!({"script": script, "args": []});
        let (status, v) = wd(
            self.driver,
            "POST",
            &self.path("/execute/sync"),
            Some(&body),
        );
        assert_eq!(status, 200, "{script}: {v}");
        v["value"].clone()
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let (status, shot) = wd(self.driver, "GET", &self.path("/screenshot"), None);
        assert_eq!(status, 200);
        base64_decode(shot["value"].as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = wd(self.driver, "DELETE", &self.path(""), None);
    }
}
