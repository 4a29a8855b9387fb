//! Framing: each message is a 4-byte big-endian length and that many bytes of JSON.
//!
//! Versioning. A proxy sends the highest wire version it speaks in the
//! [`WIRE_HEADER`] request header (none: version 1); the controller answers
//! with the version it uses, the lower of the two, in the same response
//! header, and encodes for it ([`encode_for`]). Within a version, fields are
//! only ever added, with defaults, and decoders ignore fields they do not
//! know, so a proxy one release older or newer than the controller keeps
//! working through an upgrade. `tests/wire_compat.rs` decodes a frame
//! captured from version 1 and checks that what version 2 sends still
//! decodes as version 1 did.
//!
//! - 1: `{version, config}`.
//! - 2: adds `generation`, the Gateway's `metadata.generation` the config
//!   was computed from.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Largest message accepted (certificates included, a Gateway's IR stays far below).
pub const MAX_MESSAGE: usize = 64 << 20;

/// The newest wire version this build speaks.
pub const WIRE_VERSION: u32 = 2;

/// Request/response header carrying the wire version.
pub const WIRE_HEADER: &str = "portcullis-wire";

/// One configuration for one Gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Increases with every configuration the controller publishes.
    pub version: u64,
    /// The Gateway's listeners; binds are `0.0.0.0:<port>` (the proxy picks its address).
    pub config: portcullis_ir::Config,
    /// The Gateway's `metadata.generation` this config was computed from (wire 2; 0 if unknown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The wire version to use with a peer that speaks up to `peer` (absent: 1).
pub fn negotiate(peer: Option<&str>) -> u32 {
    peer.and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, WIRE_VERSION)
}

/// Encode one message as a frame of the newest version.
pub fn encode(msg: &Message) -> Bytes {
    encode_for(msg, WIRE_VERSION)
}

/// Encode one message as a frame of wire version `wire`. SecurityPolicy
/// secrets (API keys, htpasswd) are written in the clear here, and only here:
/// the proxy needs them.
pub fn encode_for(msg: &Message, wire: u32) -> Bytes {
    let mut msg = std::borrow::Cow::Borrowed(msg);
    if wire < 2 && msg.generation != 0 {
        msg.to_mut().generation = 0;
    }
    let json =
        portcullis_ir::with_secrets_revealed(|| serde_json::to_vec(&*msg)).expect("IR serialises");
    let mut b = BytesMut::with_capacity(4 + json.len());
    b.put_u32(json.len() as u32);
    b.extend_from_slice(&json);
    b.freeze()
}

/// Reassembles frames from arbitrary chunks.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
}

/// A frame that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// Not a message.
    #[error("bad message: {0}")]
    Json(#[from] serde_json::Error),
}

impl Decoder {
    /// Add a chunk; returns every message it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Message>, DecodeError> {
        self.buf.extend_from_slice(chunk);
        let mut out = vec![];
        while self.buf.len() >= 4 {
            let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
            if len > MAX_MESSAGE {
                return Err(DecodeError::TooLarge(len));
            }
            if self.buf.len() < 4 + len {
                break;
            }
            self.buf.advance(4);
            let frame = self.buf.split_to(len);
            out.push(serde_json::from_slice(&frame)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let a = Message {
            version: 1,
            config: Default::default(),
            generation: 3,
        };
        let b = Message {
            version: 2,
            config: Default::default(),
            generation: 0,
        };
        let mut all = encode(&a).to_vec();
        all.extend_from_slice(&encode(&b));
        for cut in 0..all.len() {
            let mut d = Decoder::default();
            let mut got = d.push(&all[..cut]).expect("decode");
            got.extend(d.push(&all[cut..]).expect("decode"));
            assert_eq!(got, vec![a.clone(), b.clone()], "split at {cut}");
        }
        assert_eq!(negotiate(None), 1);
        assert_eq!(negotiate(Some("2")), 2);
        assert_eq!(negotiate(Some("99")), WIRE_VERSION);
        assert_eq!(negotiate(Some("x")), 1);
        let v1: serde_json::Value = serde_json::from_slice(&encode_for(&a, 1)[4..]).unwrap();
        assert!(v1.get("generation").is_none(), "wire 1 has no generation");
        let mut d = Decoder::default();
        assert!(matches!(
            d.push(&[0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::TooLarge(_))
        ));
    }
}
