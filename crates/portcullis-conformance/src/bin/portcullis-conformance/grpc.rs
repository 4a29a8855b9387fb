//! The gRPC client of upstream `utils/grpc`: unary GrpcEcho calls over h2c,
//! status codes as grpc-go reports them (including its HTTP-status mapping and
//! Unavailable for connection failures).

use std::time::Duration;

use anyhow::Result;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_conformance::echo::grpc::{SERVICE, proto};

use crate::http::await_convergence;
use crate::suite::Ctx;

pub const OK: u32 = 0;
pub const UNIMPLEMENTED: u32 = 12;

pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        7 => "PermissionDenied",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        16 => "Unauthenticated",
        _ => "Other",
    }
}

/// upstream grpc.ExpectedResponse.
#[derive(Debug, Clone)]
pub struct GrpcExpected {
    /// `Echo`, `EchoTwo` or `EchoThree`.
    pub method: &'static str,
    pub authority: String,
    pub metadata: Vec<(String, String)>,
    pub code: u32,
    pub backend: String,
    pub namespace: String,
}

pub fn rpc(method: &'static str) -> GrpcExpected {
    GrpcExpected {
        method,
        authority: String::new(),
        metadata: Vec::new(),
        code: OK,
        backend: String::new(),
        namespace: String::new(),
    }
}

impl GrpcExpected {
    pub fn to(mut self, backend: &str, namespace: &str) -> Self {
        self.backend = backend.into();
        self.namespace = namespace.into();
        self
    }
    pub fn code(mut self, code: u32) -> Self {
        self.code = code;
        self
    }
    pub fn meta(mut self, k: &str, v: &str) -> Self {
        self.metadata.push((k.to_ascii_lowercase(), v.into()));
        self
    }
    pub fn authority(mut self, a: &str) -> Self {
        self.authority = a.into();
        self
    }
    fn full_method(&self) -> String {
        format!("/{SERVICE}/{}", self.method)
    }
    /// upstream GetTestCaseName.
    pub fn case_name(&self, i: usize) -> String {
        let mut meta = self.metadata.clone();
        meta.sort();
        let headers = if meta.is_empty() {
            String::new()
        } else {
            let items: Vec<String> = meta.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!(" with headers '{{{}}}'", items.join(","))
        };
        let req = format!(
            "{i} request to '{}{}'{headers}",
            self.authority,
            self.full_method()
        );
        if self.backend.is_empty() {
            format!(
                "{req} should receive a {} ({})",
                code_name(self.code),
                self.code
            )
        } else {
            format!("{req} should go to {}", self.backend)
        }
    }
}

/// The outcome of one call.
#[derive(Debug, Clone)]
pub struct GrpcResponse {
    pub code: u32,
    pub assertions: Option<proto::Assertions>,
}

/// grpc-go's mapping of a non-200 HTTP status without grpc-status.
fn http_status_code(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// upstream SendRPC: transport failures become Unavailable, like grpc-go.
pub async fn send_rpc(addr: &str, exp: &GrpcExpected, timeout: Duration) -> GrpcResponse {
    match tokio::time::timeout(timeout, call(addr, exp)).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => GrpcResponse {
            code: 14,
            assertions: None,
        },
        Err(_) => GrpcResponse {
            code: 4,
            assertions: None,
        },
    }
}

async fn call(addr: &str, exp: &GrpcExpected) -> Result<GrpcResponse> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let authority = if exp.authority.is_empty() {
        addr.to_string()
    } else {
        exp.authority.clone()
    };
    let mut req = http::Request::post(format!("http://{authority}{}", exp.full_method()))
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "grpc-go/1.70.0");
    for (k, v) in &exp.metadata {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))?)
        .await?;
    let status = resp.status().as_u16();
    let header_status = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    if status != 200 && header_status.is_none() {
        return Ok(GrpcResponse {
            code: http_status_code(status),
            assertions: None,
        });
    }
    let collected = resp.into_body().collect().await?;
    let trailer_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    let mut data: BytesMut = BytesMut::from(&collected.to_bytes()[..]);
    let Some(code) = trailer_status.or(header_status) else {
        return Ok(GrpcResponse {
            code: 13,
            assertions: None,
        });
    };
    if code != OK {
        return Ok(GrpcResponse {
            code,
            assertions: None,
        });
    }
    if data.len() < 5 {
        return Ok(GrpcResponse {
            code: 13,
            assertions: None,
        });
    }
    data.advance(1);
    let len = data.get_u32() as usize;
    let assertions = data.get(..len).and_then(proto::decode_echo_response);
    Ok(GrpcResponse {
        code: if assertions.is_some() { OK } else { 13 },
        assertions,
    })
}

/// upstream compareResponse.
pub fn compare(exp: &GrpcExpected, resp: &GrpcResponse) -> Result<(), String> {
    if exp.code != resp.code {
        return Err(format!(
            "expected status code to be {} ({}), but got {} ({})",
            code_name(exp.code),
            exp.code,
            code_name(resp.code),
            resp.code
        ));
    }
    if resp.code == OK {
        let a = resp.assertions.clone().unwrap_or_default();
        if a.fully_qualified_method != exp.full_method() {
            return Err(format!(
                "expected path to be {}, got {}",
                exp.full_method(),
                a.fully_qualified_method
            ));
        }
        if !exp.namespace.is_empty() && exp.namespace != a.context[0] {
            return Err(format!(
                "expected namespace to be {}, got {}",
                exp.namespace, a.context[0]
            ));
        }
        if !a.context[3].starts_with(&exp.backend) {
            return Err(format!(
                "expected pod name to start with {}, got {}",
                exp.backend, a.context[3]
            ));
        }
    }
    Ok(())
}

/// upstream grpc.MakeRequestAndExpectEventuallyConsistentResponse.
pub async fn expect_rpc(ctx: &Ctx, addr: &str, exp: &GrpcExpected) -> Result<()> {
    await_convergence(ctx.consecutive_successes, ctx.timeout, |_| async {
        let resp = send_rpc(addr, exp, ctx.request_timeout).await;
        compare(exp, &resp)
    })
    .await
}

pub async fn expect_rpcs(ctx: &Ctx, addr: &str, cases: &[GrpcExpected]) -> Result<()> {
    for (i, c) in cases.iter().enumerate() {
        expect_rpc(ctx, addr, c)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", c.case_name(i)))?;
    }
    Ok(())
}
