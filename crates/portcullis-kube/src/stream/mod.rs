//! The controller → proxy configuration stream.
//!
//! A proxy opens `GET /v1/config/<namespace>/<gateway>` over HTTP/2 with
//! `Authorization: Bearer <projected ServiceAccount token>`. The controller
//! authenticates the token with a TokenReview (audience `portcullis`) and
//! checks that it belongs to the Gateway's proxy ServiceAccount; then the
//! response body is an endless sequence of length-delimited JSON messages
//! ([`wire`]), one per change of that Gateway's part of the IR ([`filter`]).

pub mod client;
pub mod filter;
pub mod server;
pub mod wire;

pub use server::{KubeTokenReviewer, Published, StreamServer, TokenReviewer};
