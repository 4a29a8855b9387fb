//! A stream that replays bytes already read from it before reading on;
//! writes go straight through. The one replaying stream of the data plane:
//! the peeked ClientHello of a TLS listener, and the bytes the HTTP/1.1 fast
//! path read before handing a connection to hyper.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner` with `prefix` put back in front of its read side.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// Reads return `prefix` first, then whatever `inner` yields (a `Vec`
    /// or `BytesMut` converts without a copy).
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Self {
        Rewind {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The bytes not replayed yet.
    pub fn remaining_prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably (reading from it directly skips the prefix).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The unreplayed prefix and the wrapped stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = buf.remaining().min(this.prefix.len());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn replays_prefix_then_reads_inner_and_writes_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut r = Rewind::new(b"hello ".to_vec(), a);
        b.write_all(b"world").await.unwrap();
        drop(b.shutdown().await);
        let mut small = [0u8; 4];
        r.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hell");
        assert_eq!(r.remaining_prefix(), b"o ");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"o world");

        let (a, mut b) = tokio::io::duplex(64);
        let mut r = Rewind::new(b"xy".to_vec(), a);
        r.write_all(b"to peer").await.unwrap();
        let mut got = [0u8; 7];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"to peer");
        let mut one = [0u8; 1];
        r.read_exact(&mut one).await.unwrap();
        let (prefix, _inner) = r.into_parts();
        assert_eq!(&prefix[..], b"y");
    }
}
