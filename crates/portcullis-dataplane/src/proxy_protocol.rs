//! The PROXY protocol (HAProxy, versions 1 and 2) on an accepted connection:
//! the header a load balancer in front of the gateway sends before anything
//! else, naming the client's address. Read without reading past it (v1 up to
//! its CRLF, at most 107 bytes; v2 its 16-byte preamble and the length it
//! gives, at most 16 + 65535 bytes but bounded here to 536 bytes of
//! addresses and TLVs), so what follows is the client's own bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included.
const V1_MAX: usize = 107;
/// Longest v2 payload accepted (addresses and TLVs).
const V2_MAX: usize = 536;

/// Why a PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Reading failed (or the peer closed).
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PROXY protocol header.
    #[error("not a PROXY protocol header")]
    Missing,
    /// A header that does not follow the specification.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Read the header; the source address it carries, or `None` for a `LOCAL`
/// (v2) or `UNKNOWN` (v1) connection, which keeps the TCP peer.
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut start = [0u8; 8];
    s.read_exact(&mut start).await?;
    if &start[..6] == b"PROXY " {
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyHeaderError::Malformed("v1 header too long"));
            }
            line.push(s.read_u8().await?);
        }
        return parse_v1(&line);
    }
    if start[..] != V2_SIG[..8] {
        return Err(ProxyHeaderError::Missing);
    }
    let mut rest = [0u8; 8];
    s.read_exact(&mut rest).await?;
    if rest[..4] != V2_SIG[8..] {
        return Err(ProxyHeaderError::Missing);
    }
    let (ver_cmd, fam) = (rest[4], rest[5]);
    let len = u16::from_be_bytes([rest[6], rest[7]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    if len > V2_MAX {
        return Err(ProxyHeaderError::Malformed("v2 header too long"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    parse_v2(ver_cmd & 0x0f, fam, &body)
}

/// A v1 line, `PROXY TCP4 src dst sport dport\r\n` (or `PROXY UNKNOWN…`).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed("v1 not text"))?;
    let text = text
        .strip_suffix("\r\n")
        .ok_or(ProxyHeaderError::Malformed("v1 without CRLF"))?;
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 source"))?;
            let _: IpAddr = dst
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 destination"))?;
            if ip.is_ipv4() != (*fam == "TCP4") {
                return Err(ProxyHeaderError::Malformed("v1 family"));
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 port"))?;
            let _: u16 = dport
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(ProxyHeaderError::Malformed("v1 fields")),
    }
}

/// A v2 payload: `cmd` 0 (LOCAL) or 1 (PROXY), `fam` the address family and
/// transport byte.
pub fn parse_v2(cmd: u8, fam: u8, body: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    match cmd {
        0 => return Ok(None),
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("v2 command")),
    }
    match fam >> 4 {
        // AF_INET
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(ip.into(), port)))
        }
        // AF_INET6
        2 if body.len() >= 36 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(a).into(), port)))
        }
        // AF_UNSPEC (or AF_UNIX): no usable address, keep the peer.
        0 | 3 => Ok(None),
        _ => Err(ProxyHeaderError::Malformed("v2 addresses")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
        let mut s = bytes;
        read_header(&mut s).await
    }

    #[tokio::test]
    async fn v1() {
        let a = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 80\r\nGET")
            .await
            .unwrap();
        assert_eq!(a, Some("203.0.113.7:51000".parse().unwrap()));
        let a = read(b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n").await.unwrap();
        assert_eq!(a, Some("[2001:db8::1]:1".parse().unwrap()));
        assert_eq!(read(b"PROXY UNKNOWN\r\n").await.unwrap(), None);
        assert!(read(b"PROXY TCP4 1.2.3.4\r\n").await.is_err());
        assert!(read(b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n").await.is_err());
        assert!(read(b"GET / HTTP/1.1\r\n\r\n").await.is_err());
    }

    #[tokio::test]
    async fn v2() {
        let mut h = V2_SIG.to_vec();
        h.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0x1f, 0x90, 0, 80,
        ]);
        h.extend(b"GET");
        assert_eq!(
            read(&h).await.unwrap(),
            Some("198.51.100.9:8080".parse().unwrap())
        );
        let mut local = V2_SIG.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).await.unwrap(), None);
        let mut bad = V2_SIG.to_vec();
        bad.extend([0x31, 0x11, 0, 12]);
        assert!(read(&bad).await.is_err());
    }
}
