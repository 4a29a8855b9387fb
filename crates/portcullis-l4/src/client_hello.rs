//! A small, bounds-checked TLS ClientHello parser: enough to route by SNI.
//!
//! It reads the record layer (handshake records, reassembling a ClientHello
//! that spans several records), then the ClientHello body up to and through
//! the extensions, and reports `server_name` (RFC 6066) and ALPN (RFC 7301).
//! Every length is checked against what is left; nothing is trusted.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest ClientHello we accept (handshake message body), and with it the
/// largest amount of data buffered before routing.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;
/// Largest TLS plaintext record (RFC 8446 5.1).
const MAX_RECORD: usize = 16 * 1024;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;

/// What a ClientHello says that routing cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the server_name extension, lower-cased.
    pub sni: Option<String>,
    /// ALPN protocols offered, in the client's order.
    pub alpn: Vec<Vec<u8>>,
}

/// Why bytes are not a usable ClientHello.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The first record is not a TLS handshake record.
    #[error("not a TLS handshake")]
    NotTls,
    /// The first handshake message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// A length or field is inconsistent.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// The ClientHello exceeds [`MAX_CLIENT_HELLO`].
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
}

/// Errors reading a ClientHello from a stream.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    /// The bytes are not a usable ClientHello.
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// The peer closed before a whole ClientHello arrived.
    #[error("connection closed before the ClientHello was complete")]
    Eof,
    /// No whole ClientHello within the timeout.
    #[error("timed out waiting for the ClientHello")]
    Timeout,
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Parses a ClientHello from the start of `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<ClientHello>, HelloError> {
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + 5) else {
            return Ok(None);
        };
        if header[0] != CONTENT_HANDSHAKE {
            return Err(if pos == 0 {
                HelloError::NotTls
            } else {
                HelloError::Malformed("non-handshake record before the ClientHello ended")
            });
        }
        if header[1] != 3 {
            return Err(HelloError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Malformed("record length"));
        }
        let Some(fragment) = buf.get(pos + 5..pos + 5 + len) else {
            return Ok(None);
        };
        pos += 5 + len;
        handshake.extend_from_slice(fragment);
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != HANDSHAKE_CLIENT_HELLO {
            return Err(HelloError::NotClientHello);
        }
        let body_len = usize::from(handshake[1]) << 16
            | usize::from(handshake[2]) << 8
            | usize::from(handshake[3]);
        if body_len > MAX_CLIENT_HELLO {
            return Err(HelloError::TooLarge);
        }
        if handshake.len() >= 4 + body_len {
            return parse_body(&handshake[4..4 + body_len]).map(Some);
        }
    }
}

/// Reads from `stream` until a whole ClientHello has arrived; returns it with
/// every byte read, which the caller must replay (to a backend or a TLS acceptor).
pub async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(ClientHello, Vec<u8>), PeekError> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        loop {
            if let Some(hello) = parse_client_hello(&buf)? {
                return Ok(hello);
            }
            // A ClientHello of the maximum size, plus a record header per record.
            if buf.len() > MAX_CLIENT_HELLO + 4 + 5 * (MAX_CLIENT_HELLO / MAX_RECORD + 1) {
                return Err(PeekError::Hello(HelloError::TooLarge));
            }
            buf.reserve(4096);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(PeekError::Eof);
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(hello)) => Ok((hello, buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(PeekError::Timeout),
    }
}

/// A cursor that never reads past its slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A vector with a one-byte length prefix.
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }
    /// A vector with a two-byte length prefix.
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader(body);
    r.take(2, "legacy_version")?;
    r.take(32, "random")?;
    if r.vec8("session_id")?.len() > 32 {
        return Err(HelloError::Malformed("session_id length"));
    }
    let suites = r.vec16("cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("cipher_suites length"));
    }
    if r.vec8("compression_methods")?.is_empty() {
        return Err(HelloError::Malformed("compression_methods length"));
    }
    let mut hello = ClientHello::default();
    if r.is_empty() {
        return Ok(hello); // no extensions at all (TLS 1.2 allows it)
    }
    let mut exts = Reader(r.vec16("extensions")?);
    if !r.is_empty() {
        return Err(HelloError::Malformed("trailing bytes after extensions"));
    }
    let mut seen: Vec<u16> = Vec::new();
    while !exts.is_empty() {
        let ty = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        if seen.contains(&ty) {
            return Err(HelloError::Malformed("duplicate extension"));
        }
        seen.push(ty);
        match ty {
            EXT_SERVER_NAME => hello.sni = parse_server_name(data)?,
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16("server_name_list")?);
    if !outer.is_empty() {
        return Err(HelloError::Malformed("server_name extension length"));
    }
    let mut host = None;
    while !list.is_empty() {
        let kind = list.u8("server_name type")?;
        let name = list.vec16("server_name")?;
        if kind != 0 {
            continue; // unknown name types are skipped
        }
        if host.is_some() {
            return Err(HelloError::Malformed("two host_name entries"));
        }
        if name.is_empty() || name.len() > 255 || !name.iter().all(|b| b.is_ascii_graphic()) {
            return Err(HelloError::Malformed("host_name"));
        }
        let name = std::str::from_utf8(name).map_err(|_| HelloError::Malformed("host_name"))?;
        let name = name.strip_suffix('.').unwrap_or(name);
        host = Some(name.to_ascii_lowercase());
    }
    Ok(host)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, HelloError> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16("alpn list")?);
    if !outer.is_empty() {
        return Err(HelloError::Malformed("alpn extension length"));
    }
    let mut out = Vec::new();
    while !list.is_empty() {
        let p = list.vec8("alpn protocol")?;
        if p.is_empty() {
            return Err(HelloError::Malformed("empty alpn protocol"));
        }
        out.push(p.to_vec());
    }
    Ok(out)
}
