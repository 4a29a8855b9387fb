//! The controller → proxy configuration stream.
//!
//! A proxy opens `GET /v1/config/<namespace>/<gateway>` over HTTP/2 and TLS
//! (the controller's certificate is signed by the CA of [`pki`]) with
//! `Authorization: Bearer <projected ServiceAccount token>`. The controller
//! authenticates the token with a TokenReview (audience `portcullis`) and
//! checks that it belongs to the Gateway's proxy ServiceAccount; then the
//! response body is an endless sequence of length-delimited JSON messages
//! ([`wire`]), one per change of that Gateway's part of the IR ([`filter`]).

pub mod auth;
pub mod client;
pub mod filter;
pub mod pki;
pub mod server;
pub mod wire;

pub use server::{KubeTokenReviewer, Published, StreamServer, TokenReviewer};
