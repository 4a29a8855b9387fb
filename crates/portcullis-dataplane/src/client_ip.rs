//! The client address: one function for everything that needs it.
//!
//! Access logs, authorization by `clientCIDRs` and rate-limit keys all use
//! [`ClientIpDetection::client_addr`], never a raw header. The rule follows
//! Envoy's `xff_num_trusted_hops` and Envoy Gateway's `clientIPDetection`:
//!
//! - By default (no trusted hops, no trusted CIDRs) the client is the TCP peer
//!   and every inbound forwarding header is untrusted: `Forwarded`,
//!   `X-Forwarded-*`, `X-Real-IP` and the like are removed before the request
//!   goes upstream and replaced by what this hop saw ([`ClientIpDetection::rewrite`]).
//! - `trusted_hops = N`: the N proxies closest to the gateway are trusted; the
//!   client is the N-th address from the right of `X-Forwarded-For` (the
//!   rightmost was appended by the closest trusted proxy). With fewer than N
//!   addresses the leftmost is taken.
//! - `trusted_cidrs`: when the peer is in one of them, `X-Forwarded-For` is
//!   walked from the right and the first address not in a trusted CIDR is the
//!   client.
//!
//! When the peer is trusted (either way), inbound forwarding headers are kept
//! and this hop appends itself to `X-Forwarded-For` and `Forwarded`.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Forwarding headers a client could forge to claim another address, host or
/// scheme; removed when the peer is not trusted.
const UNTRUSTED: [HeaderName; 9] = [
    XFF,
    XFP,
    XFH,
    FORWARDED,
    X_REAL_IP,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
];

/// Who is trusted to tell the gateway the client's address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientIpDetection {
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are
    /// trusted (Envoy's `xff_num_trusted_hops`); 0 trusts none.
    pub trusted_hops: u32,
    /// Peers in these networks are trusted proxies; their
    /// `X-Forwarded-For` is walked from the right past trusted addresses.
    pub trusted_cidrs: Vec<IpNet>,
    /// ClientTrafficPolicy `customHeader`: the client address is this
    /// header's value (set by a trusted proxy in front of the gateway).
    pub custom_header: Option<HeaderName>,
    /// With `custom_header`: no usable address is an error (403) rather than
    /// the TCP peer.
    pub fail_closed: bool,
}

fn xff_entries(h: &HeaderMap) -> Vec<IpAddr> {
    h.get_all(&XFF)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| {
            let t = t.trim();
            t.parse::<IpAddr>()
                .ok()
                .or_else(|| t.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        })
        .collect()
}

impl ClientIpDetection {
    fn in_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_cidrs.iter().any(|n| n.contains(&ip))
    }

    /// Whether the TCP peer's forwarding headers are believed.
    pub fn peer_trusted(&self, peer: IpAddr) -> bool {
        self.trusted_hops > 0 || self.in_trusted(peer)
    }

    /// The client address, or `None` when a fail-closed custom header gives
    /// none (see [`ClientIpDetection::client_addr`]).
    pub fn client_addr_checked(&self, peer: IpAddr, h: &HeaderMap) -> Option<IpAddr> {
        if let Some(name) = &self.custom_header {
            let found = h
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let v = v.trim();
                    v.parse::<IpAddr>()
                        .ok()
                        .or_else(|| v.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                })
                .map(|ip| ip.to_canonical());
            return match found {
                Some(ip) => Some(ip),
                None if self.fail_closed => None,
                None => Some(peer.to_canonical()),
            };
        }
        Some(self.client_addr(peer, h))
    }

    /// The client address of a request from `peer` with headers `h`
    /// (a custom header, when configured, is read by
    /// [`ClientIpDetection::client_addr_checked`]).
    pub fn client_addr(&self, peer: IpAddr, h: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.in_trusted(peer) {
            return xff_entries(h)
                .into_iter()
                .rev()
                .find(|ip| !self.in_trusted(*ip))
                .unwrap_or(peer);
        }
        if self.trusted_hops == 0 {
            return peer;
        }
        let xff = xff_entries(h);
        if xff.is_empty() {
            return peer;
        }
        let n = self.trusted_hops as usize;
        xff[xff.len().saturating_sub(n)].to_canonical()
    }

    /// Set the forwarding headers for the upstream request: untrusted inbound
    /// ones removed; `X-Forwarded-For`, `Forwarded` appended to (or started);
    /// `X-Forwarded-Proto`/`-Host` kept from a trusted peer, else set;
    /// `X-Real-IP` set to the client address.
    pub fn rewrite(
        &self,
        h: &mut HeaderMap,
        peer: IpAddr,
        client: IpAddr,
        proto: &'static str,
        host: &HeaderValue,
    ) {
        let peer = peer.to_canonical();
        if !self.peer_trusted(peer) {
            for n in &UNTRUSTED {
                h.remove(n);
            }
        }
        let ip = peer.to_string();
        let xff = join(h, &XFF, &ip);
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert(XFF, v);
        }
        if !h.contains_key(&XFP) {
            h.insert(XFP, HeaderValue::from_static(proto));
        }
        if !h.contains_key(&XFH) {
            h.insert(XFH, host.clone());
        }
        let node = match peer {
            IpAddr::V6(a) => format!("\"[{a}]\""),
            IpAddr::V4(a) => a.to_string(),
        };
        let mut element = format!("for={node};proto={proto}");
        if let Ok(hv) = host.to_str() {
            element.push_str(";host=\"");
            element.push_str(hv);
            element.push('"');
        }
        let fwd = join(h, &FORWARDED, &element);
        if let Ok(v) = HeaderValue::from_str(&fwd) {
            h.insert(FORWARDED, v);
        }
        if let Ok(v) = HeaderValue::from_str(&client.to_canonical().to_string()) {
            h.insert(X_REAL_IP, v);
        }
    }
}

/// Every line of `name` joined with `, `, then `last`.
fn join(h: &HeaderMap, name: &HeaderName, last: &str) -> String {
    let mut out = String::new();
    for v in h.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        out.push_str(v);
        out.push_str(", ");
    }
    out.push_str(last);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn untrusted_by_default() {
        let d = ClientIpDetection::default();
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=1.2.3.4;proto=https"),
            ("x-real-ip", "1.2.3.4"),
            ("true-client-ip", "1.2.3.4"),
            ("x-forwarded-port", "443"),
        ]);
        let client = d.client_addr(peer, &h);
        assert_eq!(client, peer);
        d.rewrite(
            &mut h,
            peer,
            client,
            "http",
            &HeaderValue::from_static("a.example"),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.example");
        assert_eq!(h["forwarded"], "for=10.0.0.9;proto=http;host=\"a.example\"");
        assert_eq!(h["x-real-ip"], "10.0.0.9");
        assert!(h.get("true-client-ip").is_none() && h.get("x-forwarded-port").is_none());
    }

    #[test]
    fn trusted_hops_pick_from_the_right() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        let one = ClientIpDetection {
            trusted_hops: 1,
            ..Default::default()
        };
        assert_eq!(
            one.client_addr(peer, &h),
            "5.5.5.5".parse::<IpAddr>().unwrap()
        );
        let two = ClientIpDetection {
            trusted_hops: 2,
            ..Default::default()
        };
        assert_eq!(
            two.client_addr(peer, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let many = ClientIpDetection {
            trusted_hops: 9,
            ..Default::default()
        };
        assert_eq!(
            many.client_addr(peer, &h),
            "6.6.6.6".parse::<IpAddr>().unwrap()
        );
        let mut h2 = h.clone();
        one.rewrite(
            &mut h2,
            peer,
            "5.5.5.5".parse().unwrap(),
            "http",
            &HeaderValue::from_static("a"),
        );
        assert_eq!(h2["x-forwarded-for"], "6.6.6.6, 1.2.3.4, 5.5.5.5, 10.0.0.9");
        assert_eq!(h2["x-real-ip"], "5.5.5.5");
    }

    #[test]
    fn trusted_cidrs_walk_past_trusted_addresses() {
        let d = ClientIpDetection {
            trusted_hops: 0,
            trusted_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.1.1.1")]);
        let trusted_peer: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(
            d.client_addr(trusted_peer, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(d.client_addr(other, &h), other);
        let mut h2 = h.clone();
        d.rewrite(
            &mut h2,
            other,
            other,
            "http",
            &HeaderValue::from_static("a"),
        );
        assert_eq!(h2["x-forwarded-for"], "192.0.2.1");
    }
}
