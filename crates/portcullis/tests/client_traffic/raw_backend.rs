//! A raw HTTP/1.1 backend for the ClientTrafficPolicy tests that look at
//! bytes (header case, trailers): every request recorded exactly as
//! received, up to the end of its body, and answered with a fixed response.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The backend; dropping it leaves its threads serving until the test ends.
pub struct RawBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

/// Whether `req` holds a whole request: a head, then nothing (no body),
/// `content-length` bytes, or a chunked body up to its end.
fn complete(req: &str) -> bool {
    let Some(end) = req.find("\r\n\r\n") else {
        return false;
    };
    let (head, body) = (req[..end].to_ascii_lowercase(), &req[end + 4..]);
    if head.contains("\r\ntransfer-encoding: chunked") {
        return (body.starts_with("0\r\n") || body.contains("\r\n0\r\n"))
            && body.ends_with("\r\n\r\n");
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= len
}

impl RawBackend {
    /// Listen on 127.0.0.1; answer every request with `response`, then close.
    pub fn start(response: &'static [u8]) -> RawBackend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let all = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let all = all.clone();
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut acc = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let req = String::from_utf8_lossy(&acc).into_owned();
                        if complete(&req) {
                            all.lock().unwrap().push(req);
                            break;
                        }
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => acc.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s.write_all(response);
                });
            }
        });
        RawBackend { addr, seen }
    }

    /// The recorded request whose target is `target`, as received, waited for (5 s).
    pub fn request(&self, target: &str) -> String {
        let start = Instant::now();
        loop {
            let found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.split(' ').nth(1) == Some(target))
                .cloned();
            if let Some(r) = found {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{target} never reached the backend"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
