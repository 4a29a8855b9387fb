//! The messages of Envoy's `envoy.service.auth.v3.Authorization/Check`, written
//! by hand as prost structs (no `protoc` at build time).
//!
//! Field numbers are those of Envoy's API definitions (Apache-2.0,
//! <https://github.com/envoyproxy/envoy/tree/main/api>):
//! `envoy/service/auth/v3/external_auth.proto`,
//! `envoy/service/auth/v3/attribute_context.proto`,
//! `envoy/config/core/v3/{address,base}.proto`, `envoy/type/v3/http_status.proto`,
//! and `google/rpc/status.proto`, `google/protobuf/{timestamp,wrappers}.proto`.
//! Only the fields Portcullis sends or reads are declared; protobuf skips the
//! others on decoding, so a service that sets more fields still works.
//! See `third_party/envoy-api/NOTICE`.

use std::collections::HashMap;

/// The gRPC method path.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// The request attributes.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// The client (downstream peer).
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// The gateway's listener.
    #[prost(message, optional, tag = "2")]
    pub destination: Option<Peer>,
    /// The request.
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
    /// `context_extensions` (not set by Portcullis).
    #[prost(map = "string, string", tag = "10")]
    pub context_extensions: HashMap<String, String>,
}

/// `AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// Its address.
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    /// `service`.
    #[prost(string, tag = "2")]
    pub service: String,
    /// `principal`.
    #[prost(string, tag = "4")]
    pub principal: String,
}

/// `envoy.config.core.v3.Address` (the `socket_address` case only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// `socket_address` (oneof `address`, tag 1).
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// `protocol`: 0 TCP.
    #[prost(int32, tag = "1")]
    pub protocol: i32,
    /// IP address.
    #[prost(string, tag = "2")]
    pub address: String,
    /// `port_value` (oneof `port_specifier`, tag 3).
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// When the request arrived.
    #[prost(message, optional, tag = "1")]
    pub time: Option<Timestamp>,
    /// The HTTP request.
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// The request ID (`x-request-id`).
    #[prost(string, tag = "1")]
    pub id: String,
    /// Method.
    #[prost(string, tag = "2")]
    pub method: String,
    /// Headers, lower-case names; repeated headers joined with `,`.
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    /// Path and query.
    #[prost(string, tag = "4")]
    pub path: String,
    /// Host (`:authority`).
    #[prost(string, tag = "5")]
    pub host: String,
    /// `http` or `https`.
    #[prost(string, tag = "6")]
    pub scheme: String,
    /// Always empty (the query is in `path`), as Envoy.
    #[prost(string, tag = "7")]
    pub query: String,
    /// Always empty.
    #[prost(string, tag = "8")]
    pub fragment: String,
    /// Body size, `-1` when unknown.
    #[prost(int64, tag = "9")]
    pub size: i64,
    /// `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`.
    #[prost(string, tag = "10")]
    pub protocol: String,
    /// The body, when it is UTF-8 (`bodyToExtAuth`).
    #[prost(string, tag = "11")]
    pub body: String,
    /// The body, when it is not UTF-8 (`bodyToExtAuth`).
    #[prost(bytes = "vec", tag = "12")]
    pub raw_body: Vec<u8>,
}

/// `envoy.service.auth.v3.CheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `google.rpc.Status`: code 0 allows.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    /// `denied_response` (oneof `http_response`).
    #[prost(message, optional, tag = "2")]
    pub denied_response: Option<DeniedHttpResponse>,
    /// `ok_response` (oneof `http_response`).
    #[prost(message, optional, tag = "3")]
    pub ok_response: Option<OkHttpResponse>,
}

/// `google.rpc.Status` (without `details`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// gRPC code; 0 is OK.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Message.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.auth.v3.DeniedHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// `envoy.type.v3.HttpStatus`.
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// Headers of the answer to the client.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Body of the answer to the client.
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.type.v3.HttpStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// `code` (the `StatusCode` enum's numbers are the HTTP codes).
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `envoy.service.auth.v3.OkHttpResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// Headers set on (or appended to) the upstream request.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Headers removed from the upstream request.
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
    /// Headers added to the response to the client.
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
}

/// `envoy.config.core.v3.HeaderValueOption`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `google.protobuf.BoolValue append` (deprecated in favour of `append_action`).
    #[prost(message, optional, tag = "2")]
    pub append: Option<BoolValue>,
    /// `HeaderAppendAction`: 0 append-or-add, 1 add-if-absent,
    /// 2 overwrite-or-add, 3 overwrite-if-exists.
    #[prost(int32, tag = "3")]
    pub append_action: i32,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// Name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
    /// Value as bytes (used when set).
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// `google.protobuf.BoolValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// The value.
    #[prost(bool, tag = "1")]
    pub value: bool,
}
