//! The access log: one `access` event per request with the response flag.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_access_event_per_request() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("access=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve(vec![rule(
            "logged",
            prefix("/ok"),
            vec![wb(1, e.backend())],
        )])
        .await;
        assert_eq!(get(addr, "log.example", "/ok/1").await.status, 200);
        assert_eq!(get(addr, "log.example", "/missing").await.status, 404);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("access")).collect();
        assert_eq!(lines.len(), 2, "{text}");
        let ok = lines[0];
        for part in [
            "method=GET",
            "authority=\"log.example\"",
            "path=\"/ok/1\"",
            "status=200",
            "route=ns/logged",
            "flag=\"-\"",
        ] {
            assert!(ok.contains(part), "{part} missing in {ok}");
        }
        assert!(ok.contains(&format!("upstream={}", e.addr)), "{ok}");
        assert!(ok.contains("duration_ms="), "{ok}");
        let nr = lines[1];
        for part in ["status=404", "flag=\"NR\"", "upstream=-"] {
            assert!(nr.contains(part), "{part} missing in {nr}");
        }
    })
    .await
    .unwrap();
}
