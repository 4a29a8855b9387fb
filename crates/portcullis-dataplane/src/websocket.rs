//! WebSocket (and other HTTP/1.1 upgrade) tunnelling.
//!
//! After the upstream answers 101, both sides are upgraded by hyper and the
//! bytes are copied in both directions until either side closes. The tunnel
//! holds a drain watch: it survives configuration changes and is closed only
//! when its port is drained, at the drain deadline.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::drain::DrainWatch;

/// Spawn the tunnel between the client's and the upstream's upgraded connections.
pub fn spawn_tunnel(client: OnUpgrade, upstream: OnUpgrade, mut drain: DrainWatch) {
    tokio::spawn(async move {
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
        let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
        tokio::pin!(copy);
        tokio::select! {
            r = &mut copy => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "tunnel closed with error");
                }
            }
            deadline = drain.signaled() => {
                // Draining: let the tunnel run until the deadline, then cut it.
                let _ = tokio::time::timeout_at(deadline, &mut copy).await;
            }
        }
    });
}
