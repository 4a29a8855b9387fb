//! Starts the `portcullis-echo` binary on 127.0.0.1 and checks its answers over
//! real sockets: the JSON echo, response headers on request, status codes,
//! delays, h2c, the retry simulation and the WebSocket echo.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_conformance::echo::RequestAssertions;

struct Echo {
    child: Child,
    http: u16,
    h2c: u16,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start() -> Echo {
    let (http, h2c) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis-echo"))
        .args(["--bind", "127.0.0.1"])
        .env("HTTP_PORT", http.to_string())
        .env("H2C_PORT", h2c.to_string())
        .env("POD_NAME", "infra-backend-v1-abcdefghij-xyz12")
        .env("NAMESPACE", "gateway-conformance-infra")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(Instant::now() < deadline, "echo did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Echo { child, http, h2c }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, headers, body).
fn request(port: u16, raw: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn echoes_request_as_json() {
    let echo = start();
    let (status, headers, body) = request(
        echo.http,
        "GET /some/path?x=1 HTTP/1.1\r\nHost: example.com\r\nx-custom-thing: a\r\nX-Custom-Thing: b\r\nX-Echo-Set-Header: X-Foo: bar, X-Foo: baz,X-Other:1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "x-foo"), Some("bar,baz"));
    assert_eq!(header(&headers, "x-other"), Some("1"));
    let doc: RequestAssertions = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc.path, "/some/path?x=1");
    assert_eq!(doc.host, "example.com");
    assert_eq!(doc.method, "GET");
    assert_eq!(doc.proto, "HTTP/1.1");
    assert_eq!(doc.http_port, echo.http.to_string());
    assert_eq!(doc.context.pod, "infra-backend-v1-abcdefghij-xyz12");
    assert_eq!(doc.context.namespace, "gateway-conformance-infra");
    assert_eq!(
        doc.headers["X-Custom-Thing"],
        vec!["a".to_string(), "b".to_string()]
    );
    assert!(!doc.headers.contains_key("Host"));
    assert!(doc.tls.is_none());
    // The raw JSON uses upstream's field names and a one-space indent.
    let raw = String::from_utf8(body).unwrap();
    assert!(raw.starts_with("{\n \"path\": \"/some/path?x=1\""), "{raw}");
    assert!(raw.contains("\"httpPort\""));
    assert!(!raw.contains("\"tls\""));
}

#[test]
fn status_delay_and_health() {
    let echo = start();
    let (status, _, _) = request(
        echo.http,
        "GET /status/418 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 418);
    let (status, _, _) = request(
        echo.http,
        "GET /status/abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    let (status, _, body) = request(
        echo.http,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((status, body.as_slice()), (200, b"OK".as_slice()));
    let start = Instant::now();
    let (status, _, _) = request(
        echo.http,
        "GET /?delay=300ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let (status, _, _) = request(
        echo.http,
        "GET /?delay=nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 500);
}

#[test]
fn h2c_port_rejects_plain_http1_and_logs_requests() {
    let mut echo = start();
    let (status, _, body) = request(
        echo.h2c,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    assert_eq!(body, b"Expected h2c request");
    request(
        echo.http,
        "GET /logged?id=42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let stdout = echo.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let found = lines.by_ref().take(5).any(|l| {
        l.unwrap()
            .starts_with("Echoing back request made to /logged?id=42 to client")
    });
    assert!(found);
}

#[test]
fn retry_simulation_fails_then_succeeds() {
    let echo = start();
    let req = "GET /retry/x?uuid=u1&succeedAfter=2&responseCode=503 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(request(echo.http, req).0, 503);
    assert_eq!(request(echo.http, req).0, 503);
    assert_eq!(request(echo.http, req).0, 200);
    // Without responseCode the connection is reset instead of answered.
    let mut s = TcpStream::connect(("127.0.0.1", echo.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /retry/y?uuid=u2&succeedAfter=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let r = s.read_to_end(&mut buf);
    assert!(
        r.is_err() || buf.is_empty(),
        "expected no HTTP answer, got {:?}",
        String::from_utf8_lossy(&buf)
    );
}

#[test]
fn websocket_echo_requires_origin_and_echoes_frames() {
    let echo = start();
    let req = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert_eq!(request(echo.http, req).0, 403);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
        let mut r = format!("ws://127.0.0.1:{}/ws", echo.http)
            .into_client_request()
            .unwrap();
        r.headers_mut()
            .insert("origin", "ws://gateway/test".parse().unwrap());
        let (mut ws, _) =
            tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(r))
                .await
                .unwrap()
                .unwrap();
        ws.send(Message::Text("hello".into())).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m, Message::Text("hello".into()));
        ws.send(Message::Binary(vec![1u8, 2, 3].into()))
            .await
            .unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m, Message::Binary(vec![1u8, 2, 3].into()));
    });
}

fn spawn_mode(envs: &[(&str, String)], args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis-echo"));
    cmd.args(["--bind", "127.0.0.1"]).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the "listening" line.
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening"), "{first}");
    child
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tcp_mode_speaks_the_tcp_backend_protocol() {
    let port = free_port();
    let _child = Kill(spawn_mode(
        &[
            ("TCP_ECHO_SERVER", "1".into()),
            ("TCP_PORT", port.to_string()),
            ("POD_NAME", "tcp-backend-abcdefghij-xyz12".into()),
            ("NAMESPACE", "ns".into()),
        ],
        &[],
    ));
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "Gateway API Test TCP Server\n");
    for (cmd, want) in [("PING\n", "PONG\n"), ("IS_TLS\n", "false\n")] {
        w.write_all(cmd.as_bytes()).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, want);
    }
    w.write_all(b"TEST\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["pod"], "tcp-backend-abcdefghij-xyz12");
    assert_eq!(v["namespace"], "ns");
    assert_eq!(v["isTLS"], false);
    assert_eq!(v["tcpport"], port.to_string());
}

#[test]
fn udp_echo_and_dns_modes_answer_datagrams() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _echo = Kill(spawn_mode(
        &[
            ("UDP_ECHO_SERVER", "1".into()),
            ("UDP_PORT", port.to_string()),
            ("POD_NAME", "udp-backend-abcdefghij-xyz12".into()),
            ("SERVICE_NAME", "udp-backend".into()),
        ],
        &[],
    ));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(b"hello", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(v["request"], "hello");
    assert_eq!(v["pod"], "udp-backend-abcdefghij-xyz12");
    assert_eq!(v["service"], "udp-backend");

    let dns_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _dns = Kill(spawn_mode(&[], &["--dns-port", &dns_port.to_string()]));
    let mut q = vec![
        0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'f', b'o', b'o', 0, 0, 1, 0, 1,
    ];
    sock.send_to(&q, ("127.0.0.1", dns_port)).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..2], &[0xab, 0xcd]);
    assert_eq!(buf[2] & 0x80, 0x80, "response bit");
    q[2] = buf[2];
    q[3] = buf[3];
    assert_eq!(&buf[..n], &q[..]);
}
