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
        // The peer's address is written once (and again only for a client
        // that is not the peer): `Ipv4Addr`'s `Display` costs ~1,300
        // instructions, three of them were ~8 % of a proxied request.
        let ip = ip_text(peer);
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
        let mut element = String::with_capacity(32 + ip.len() + host.len());
        element.push_str("for=");
        match peer {
            IpAddr::V6(_) => {
                element.push_str("\"[");
                element.push_str(&ip);
                element.push_str("]\"");
            }
            IpAddr::V4(_) => element.push_str(&ip),
        }
        element.push_str(";proto=");
        element.push_str(proto);
        if let Ok(hv) = host.to_str() {
            element.push_str(";host=\"");
            element.push_str(hv);
            element.push('"');
        }
        let fwd = join(h, &FORWARDED, &element);
        if let Ok(v) = HeaderValue::from_str(&fwd) {
            h.insert(FORWARDED, v);
        }
        let client = client.to_canonical();
        let real = if client == peer { ip } else { ip_text(client) };
        if let Ok(v) = HeaderValue::from_str(&real) {
            h.insert(X_REAL_IP, v);
        }
    }
}

/// `ip` as its `Display` writes it; an IPv4 address without the formatting
/// machinery (it is written on every proxied request).
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let mut s = String::with_capacity(15);
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if o >= 100 {
                    s.push(char::from(b'0' + o / 100));
                }
                if o >= 10 {
                    s.push(char::from(b'0' + o / 10 % 10));
                }
                s.push(char::from(b'0' + o % 10));
            }
            s
        }
        IpAddr::V6(a) => a.to_string(),
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
    fn ip_text_is_what_display_writes() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        for o in 0..=255u8 {
            for a in [
                [o, 0, 0, 0],
                [0, o, 0, 0],
                [10, 0, o, 1],
                [255, 254, 9, o],
                [o, o, o, o],
            ] {
                let ip = IpAddr::V4(Ipv4Addr::from(a));
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        for s in [
            "::1",
            "::",
            "2001:db8::7",
            "fe80::1:2:3:4",
            "::ffff:10.0.0.1",
            "1:2:3:4:5:6:7:8",
        ] {
            let ip = IpAddr::V6(s.parse::<Ipv6Addr>().unwrap());
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn forwarding_headers_as_written_before() {
        // The values `rewrite` wrote with `to_string`/`format!`, for an IPv4
        // and an IPv6 peer, a client that is not the peer (trusted hop) and
        // one that is.
        let host = HeaderValue::from_static("a.example:8080");
        let d = ClientIpDetection::default();
        let peer: IpAddr = "192.168.100.7".parse().unwrap();
        let mut h = HeaderMap::new();
        d.rewrite(&mut h, peer, peer, "http", &host);
        assert_eq!(h["x-forwarded-for"], "192.168.100.7");
        assert_eq!(
            h["forwarded"],
            "for=192.168.100.7;proto=http;host=\"a.example:8080\""
        );
        assert_eq!(h["x-real-ip"], "192.168.100.7");
        let peer6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut h = HeaderMap::new();
        d.rewrite(&mut h, peer6, peer6, "https", &host);
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
        assert_eq!(
            h["forwarded"],
            "for=\"[2001:db8::7]\";proto=https;host=\"a.example:8080\""
        );
        assert_eq!(h["x-real-ip"], "2001:db8::7");
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let mut h = HeaderMap::new();
        d.rewrite(&mut h, mapped, mapped, "http", &host);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(
            h["forwarded"],
            "for=10.1.2.3;proto=http;host=\"a.example:8080\""
        );
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        let hops = ClientIpDetection {
            trusted_hops: 1,
            ..Default::default()
        };
        let mut h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let client = hops.client_addr(peer, &h);
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap());
        hops.rewrite(&mut h, peer, client, "http", &host);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 192.168.100.7");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
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
