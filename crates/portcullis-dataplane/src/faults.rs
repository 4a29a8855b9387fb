//! BackendTrafficPolicy `faultInjection` (delays and aborts for a share of
//! requests, before forwarding) and `responseOverride` (answers of matching
//! statuses replaced by a custom body, content type and status: upstream
//! answers and the gateway's own answers after routing alike).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use portcullis_ir::traffic::{Fault, ResponseOverride};
use rand::Rng;

use crate::body::{self, ProxyBody};

fn hit(millionths: u32) -> bool {
    millionths >= 1_000_000 || rand::rng().random_range(0..1_000_000) < millionths
}

/// Apply a fault: maybe wait, then maybe answer instead of forwarding.
pub async fn inject(f: &Fault, grpc: bool) -> Option<Response<ProxyBody>> {
    if let Some((ms, share)) = f.delay
        && hit(share)
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let (status, grpc_status, share) = f.abort?;
    if !hit(share) {
        return None;
    }
    let mut r = if grpc && let Some(code) = grpc_status {
        let mut r = Response::new(body::empty());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from(u16::from(code)));
        r.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_static("fault filter abort"),
        );
        r
    } else {
        let mut r = Response::new(body::full(Bytes::from_static(b"fault filter abort\n")));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    };
    r.headers_mut()
        .insert("x-portcullis-fault", HeaderValue::from_static("abort"));
    Some(r)
}

/// Replace `resp` by the first override matching its status, if any.
pub fn override_response(
    list: &[ResponseOverride],
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = resp.status().as_u16();
    let Some(o) = list
        .iter()
        .find(|o| o.statuses.iter().any(|(a, b)| (*a..=*b).contains(&status)))
    else {
        return resp;
    };
    let (mut parts, old) = resp.into_parts();
    if let Some(s) = o.status.and_then(|s| StatusCode::from_u16(s).ok()) {
        parts.status = s;
    }
    let new_body = match &o.body {
        Some(b) => {
            drop(old);
            for h in [
                header::CONTENT_LENGTH,
                header::TRANSFER_ENCODING,
                header::CONTENT_ENCODING,
            ] {
                parts.headers.remove(h);
            }
            body::full(Bytes::from(b.clone()))
        }
        None => old,
    };
    if let Some(ct) = o
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        parts.headers.insert(header::CONTENT_TYPE, ct);
    }
    Response::from_parts(parts, new_body)
}
