//! Framing: each message is a 4-byte big-endian length and that many bytes of JSON.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Largest message accepted (certificates included, a Gateway's IR stays far below).
pub const MAX_MESSAGE: usize = 64 << 20;

/// One configuration for one Gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Increases with every configuration the controller publishes.
    pub version: u64,
    /// The Gateway's listeners; binds are `0.0.0.0:<port>` (the proxy picks its address).
    pub config: portcullis_ir::Config,
}

/// Encode one message as a frame. SecurityPolicy secrets (API keys,
/// htpasswd) are written in the clear here, and only here: the proxy needs them.
pub fn encode(msg: &Message) -> Bytes {
    let json =
        portcullis_ir::with_secrets_revealed(|| serde_json::to_vec(msg)).expect("IR serialises");
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
        };
        let b = Message {
            version: 2,
            config: Default::default(),
        };
        let mut all = encode(&a).to_vec();
        all.extend_from_slice(&encode(&b));
        for cut in 0..all.len() {
            let mut d = Decoder::default();
            let mut got = d.push(&all[..cut]).expect("decode");
            got.extend(d.push(&all[cut..]).expect("decode"));
            assert_eq!(got, vec![a.clone(), b.clone()], "split at {cut}");
        }
        let mut d = Decoder::default();
        assert!(matches!(
            d.push(&[0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::TooLarge(_))
        ));
    }
}
