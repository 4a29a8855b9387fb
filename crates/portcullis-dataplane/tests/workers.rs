//! Worker threads (`Options::workers`): every connection is served, route
//! tables swap on every worker, ports stop and shut down cleanly.

mod common;

use std::time::Duration;

use common::*;
use portcullis_dataplane::Options;
use portcullis_ir::*;

fn opts(workers: usize) -> Options {
    Options {
        workers,
        drain_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[tokio::test]
async fn workers_serve_every_connection_and_see_every_apply() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b) = (Echo::start("a").await, Echo::start("b").await);
        let (dp, addr) = serve_with(
            opts(3),
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, a.backend())])],
            )],
        )
        .await;
        // Fresh connections land on the workers' sockets (the kernel spreads
        // them); each must be served.
        for _ in 0..30 {
            let got = get(addr, "x.example", "/one").await;
            assert_eq!(got.status, 200);
            assert_eq!(got.json()["backend"], "a");
        }
        // Keep-alive connections opened before a change see the new table.
        let clients: Vec<TestClient> = (0..6).map(|_| client()).collect();
        for c in &clients {
            assert_eq!(send(c, addr, "GET", "x", "/", &[]).await.status, 200);
        }
        let report = dp
            .apply(config(
                addr,
                vec![listener(
                    "gw/l",
                    None,
                    vec![rule("r", prefix("/"), vec![wb(1, b.backend())])],
                )],
            ))
            .await;
        assert!(report.bind_errors.is_empty(), "{report:?}");
        for c in &clients {
            let got = send(c, addr, "GET", "x", "/", &[]).await;
            assert_eq!(got.status, 200);
            assert_eq!(got.json()["backend"], "b");
        }
        // Removing the port closes every worker's socket.
        assert!(
            dp.apply(std::sync::Arc::new(Config::default()))
                .await
                .bind_errors
                .is_empty()
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "port still accepting"
        );
        dp.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_port_taken_by_another_socket_is_a_bind_error_with_workers() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let dp = portcullis_dataplane::Dataplane::new(opts(2));
        let report = dp
            .apply(config(addr, vec![listener("gw/l", None, vec![])]))
            .await;
        assert!(report.bind_errors.contains_key(&addr), "{report:?}");
        dp.shutdown().await;
    })
    .await
    .expect("test timed out");
}
