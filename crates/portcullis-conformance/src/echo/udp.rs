//! UDP backends: the UDP echo (`UDP_ECHO_SERVER`, upstream `udpechoserver`: one
//! JSON reply per datagram) and a minimal DNS responder standing in for the
//! coredns pod of the upstream base manifests (it answers every query, which is
//! all the UDPRoute test asks of it).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use super::{EchoContext, EchoError};

/// The JSON reply of the UDP echo.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UdpEchoResponse {
    /// The datagram received.
    pub request: String,
    /// `NAMESPACE`.
    pub namespace: String,
    /// `INGRESS_NAME`.
    pub ingress: String,
    /// `SERVICE_NAME`.
    pub service: String,
    /// `POD_NAME`.
    pub pod: String,
}

async fn bind(addr: SocketAddr) -> Result<UdpSocket, EchoError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })
}

/// Replies to each datagram with a [`UdpEchoResponse`].
pub async fn run_echo(addr: SocketAddr, context: EchoContext) -> Result<(), EchoError> {
    let socket = bind(addr).await?;
    super::log!("UDP server listening on :{}", addr.port());
    let mut buf = vec![0u8; 1024];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        let request = String::from_utf8_lossy(&buf[..n]).into_owned();
        super::log!("Received UDP {request} from {peer}");
        let reply = UdpEchoResponse {
            request,
            namespace: context.namespace.clone(),
            ingress: context.ingress.clone(),
            service: context.service.clone(),
            pod: context.pod.clone(),
        };
        let payload = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
        socket.send_to(&payload, peer).await?;
    }
}

/// The answer to a DNS query: the query's header and question with the
/// response bit set, no answers (NOERROR). `None` for datagrams too short to
/// be DNS.
pub fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    // Walk the question section to find where it ends.
    let mut pos = 12;
    for _ in 0..qdcount {
        loop {
            let len = *query.get(pos)? as usize;
            pos += 1;
            if len == 0 {
                break;
            }
            pos += len;
        }
        pos += 4;
        if pos > query.len() {
            return None;
        }
    }
    let mut out = query[..pos].to_vec();
    out[2] = 0x80 | (query[2] & 0x79); // QR, opcode and RD kept
    out[3] = 0x80; // RA, RCODE 0
    out[6..12].fill(0); // no answer, authority or additional records
    Some(out)
}

/// Answers DNS queries on `addr` (the coredns stand-in).
pub async fn run_dns(addr: SocketAddr) -> Result<(), EchoError> {
    let socket = bind(addr).await?;
    super::log!("DNS responder listening on :{}", addr.port());
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        if let Some(answer) = dns_answer(&buf[..n]) {
            socket.send_to(&answer, peer).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answer_mirrors_question() {
        // ID 0x1234, RD, one question: foo.bar.com A IN.
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["foo", "bar", "com"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let a = dns_answer(&q).unwrap();
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80);
        assert_eq!(&a[4..6], &[0, 1]);
        assert_eq!(&a[12..], &q[12..]);
        assert_eq!(dns_answer(&q[..5]), None);
    }
}
