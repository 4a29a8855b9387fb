//! The access log: JSON lines from real requests over 127.0.0.1, parsed
//! back; secrets never written; the file reopened after a rotation.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use portcullis_obs::accesslog::{self, Config, Field, Format, Output};
use serde_json::Value;

/// The log file's JSON lines, once there are at least `n` of them.
async fn lines(path: &PathBuf, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let v: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect();
        if v.len() >= n {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "fewer than {n} lines in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

#[tokio::test]
async fn json_lines_from_real_requests() {
    let dir = std::env::temp_dir().join(format!("portcullis-access-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let _ = std::fs::remove_file(&path);
    accesslog::install(Config {
        format: Format::Json,
        fields: Field::ALL.to_vec(),
        output: Output::File(path.clone()),
    })
    .unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-log/http",
                None,
                vec![rule("logged", prefix("/ok"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        let secret_headers = [
            ("authorization", "Bearer s3cr3t-bearer"),
            ("cookie", "session=c00kie-value"),
            ("x-api-key", "k3y-value"),
            ("x-request-id", "req-42"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ];
        let ok = send_body(
            &c,
            addr,
            "POST",
            "log.example",
            "/ok/1?api_key=q-s3cr3t&page=2",
            &secret_headers,
            Bytes::from_static(b"hello"),
        )
        .await;
        assert_eq!(ok.status, 200);
        assert_eq!(
            send(&c, addr, "GET", "log.example", "/missing", &[])
                .await
                .status,
            404
        );

        let v = lines(&path, 2).await;
        let ok = v.iter().find(|l| l["status"] == 200).expect("the 200 line");
        assert_eq!(ok["method"], "POST");
        assert_eq!(ok["authority"], "log.example");
        assert_eq!(ok["path"], "/ok/1");
        assert_eq!(ok["query"], "api_key=REDACTED&page=2");
        assert_eq!(ok["protocol"], "HTTP/1.1");
        assert_eq!(ok["request_id"], "req-42");
        assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ok["response_flags"], Value::Null);
        assert_eq!(ok["bytes_in"], 5);
        assert!(ok["bytes_out"].as_u64().unwrap() > 0, "{ok}");
        assert!(ok["duration_ms"].as_f64().unwrap() > 0.0, "{ok}");
        assert!(ok["upstream_duration_ms"].as_f64().unwrap() > 0.0, "{ok}");
        assert_eq!(ok["upstream"], e.addr.to_string());
        assert_eq!(ok["gateway"], "ns/gw-log");
        assert_eq!(ok["listener"], "http");
        assert_eq!(ok["route"], "ns/logged");
        assert_eq!(ok["rule"], "0");
        assert_eq!(ok["backend"], "ns/e:80");
        // The derived client address (the TCP peer: no trusted hops).
        assert_eq!(ok["client"], "127.0.0.1", "{ok}");
        assert!(ok["time"].as_str().unwrap().ends_with('Z'), "{ok}");

        let nr = v.iter().find(|l| l["status"] == 404).expect("the 404 line");
        assert_eq!(nr["response_flags"], "NR");
        assert_eq!(nr["upstream"], Value::Null);
        assert_eq!(nr["route"], Value::Null);
        assert_eq!(nr["listener"], "http");
        assert_eq!(nr["request_id"].as_str().unwrap().len(), 16);

        let text = std::fs::read_to_string(&path).unwrap();
        for secret in ["s3cr3t", "c00kie", "k3y-value", "Bearer"] {
            assert!(!text.contains(secret), "{secret} logged:\n{text}");
        }

        // logrotate: the file is moved away, SIGHUP (here: reopen()) makes a new one.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        accesslog::reopen();
        assert_eq!(
            send(&c, addr, "GET", "log.example", "/ok/after", &[])
                .await
                .status,
            200
        );
        let after = lines(&path, 1).await;
        assert_eq!(after[0]["path"], "/ok/after");
        assert_eq!(lines(&rotated, 2).await.len(), 2);
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A writer that cannot keep up never holds a request: with the log going to
/// a pipe nobody reads, the writer blocks once the pipe is full, the queue
/// fills, and every further line is dropped and counted; the requests are
/// all answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_writer_drops_lines_and_counts_them() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir().join(format!("portcullis-access-fifo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("access.pipe");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A reader that never reads, opened without blocking, so that the
    // writer's open succeeds (O_NONBLOCK is 0o4000 on Linux).
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000)
        .open(&fifo)
        .unwrap();
    const QUEUE: usize = 16;
    accesslog::install_with(
        Config {
            format: Format::Json,
            fields: Field::ALL.to_vec(),
            output: Output::File(fifo.clone()),
        },
        QUEUE,
    )
    .unwrap();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-stuck/http",
                None,
                vec![rule("stuck", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        // A line is a few hundred bytes: the pipe (64 KiB) and the writer's
        // buffer (64 KiB) take well under 1,000 of them.
        let path = format!("/{}", "p".repeat(200));
        let dropped = || portcullis_obs::metrics().access_log_dropped.get();
        let mut sent = 0u64;
        while dropped() == 0 && sent < 5_000 {
            assert_eq!(
                send(&c, addr, "GET", "s.example", &path, &[]).await.status,
                200
            );
            sent += 1;
        }
        assert!(dropped() > 0, "nothing dropped after {sent} requests");
        // From now on every line is dropped (the writer stays blocked).
        let before = dropped();
        for _ in 0..50 {
            assert_eq!(
                send(&c, addr, "GET", "s.example", &path, &[]).await.status,
                200
            );
        }
        // A line is queued when its response body ends, which may be just
        // after the client read it: wait for the last ones, boundedly.
        for _ in 0..250 {
            if dropped() - before >= 50 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // (The line of the request before may land just after `before`.)
        let n = dropped() - before;
        assert!((50..=51).contains(&n), "{n} dropped");
    })
    .await
    .expect("test timed out");
}
