//! The client address the gateway acts on (authorization `clientCIDRs`, and
//! later rate-limit keys and access logs).
//!
//! Today it is the TCP peer, always: inbound `X-Forwarded-For`, `Forwarded`
//! and `X-Real-IP` are never trusted for decisions. This is the one function
//! that derives it, so that `ClientTrafficPolicy.clientIPDetection` (trusted
//! hops, trusted CIDRs, a custom header) and PROXY protocol extend it here and
//! every caller follows.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

/// The client address of a request that arrived from `peer` with `headers`.
pub fn client_addr(peer: SocketAddr, _headers: &HeaderMap) -> IpAddr {
    peer.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_are_not_trusted() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        h.insert("x-real-ip", "10.0.0.2".parse().unwrap());
        let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        assert_eq!(
            client_addr(peer, &h),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
        let mapped: SocketAddr = "[::ffff:192.0.2.8]:1".parse().unwrap();
        assert_eq!(
            client_addr(mapped, &h),
            "192.0.2.8".parse::<IpAddr>().unwrap()
        );
    }
}
