//! 5,000 HTTPRoutes settle in seconds: listed, translated once, and every
//! route's status written through the rate-limited writer.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_routes_settle_in_seconds() {
    init_tracing();
    const N: usize = 5000;
    let api = FakeApi::new();
    for o in [
        namespace("default"),
        class(),
        gateway("gw", 18080),
        service("web"),
    ] {
        api.put(o);
    }
    for i in 0..N {
        api.put(route(&format!("r{i}"), "gw", "web"));
    }
    let addr = api.listen(0).await;
    let started = Instant::now();
    // The default 15 s lease: under this load a renewal may take over a second,
    // and with the tests' 3 s lease the leader would rightly step down.
    let mut a = args("scale", false);
    a.lease_duration = 15;
    let ctl = start(FakeApi::client(addr), a, vec![]).await;
    let deadline = started + Duration::from_secs(120);
    loop {
        let done = api
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.status == 200 && r.path.contains("/httproutes/"))
            .count();
        if done >= N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {N} route statuses written after 120s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    eprintln!("{N} route statuses written in {elapsed:?}");
    // Every route got exactly one write, and the stored statuses are ours.
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/httproutes/"))
        .collect();
    assert_eq!(patches.len(), N, "one write per route, no retries");
    let sample = api.get(GW, "httproutes", "default", "r4999").unwrap();
    assert_eq!(sample["status"]["parents"][0]["controllerName"], ME);
    // The Gateway counts them all.
    let gw = eventually(20, "attachedRoutes", || {
        let g = api.get(GW, "gateways", "default", "gw")?;
        (g["status"]["listeners"][0]["attachedRoutes"] == N).then_some(g)
    })
    .await;
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], N);
    // A sanity bound for a debug build on a shared, loaded CI machine (it
    // catches a pass that grows quadratically, which takes minutes); the
    // speed claim is the release-build benchmark's (BENCHMARKS.md).
    assert!(
        elapsed < Duration::from_secs(100),
        "{N} routes took {elapsed:?}"
    );
    ctl.shutdown().await.unwrap();
}
