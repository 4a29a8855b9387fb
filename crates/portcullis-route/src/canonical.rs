//! The canonical request path, used both for matching and for forwarding.
//!
//! The rule (applied to the path of an origin-form request target, query excluded):
//!
//! 1. The path must start with `/`; anything else is rejected.
//! 2. Percent-encodings of *unreserved* characters (RFC 3986 §2.3: `A-Z a-z
//!    0-9 - . _ ~`) are decoded. Every other percent-encoding is kept encoded,
//!    with its hex digits upper-cased (RFC 3986 §6.2.2.1). In particular an
//!    encoded slash `%2F`/`%2f` stays `%2F` and is **not** a path separator:
//!    `/a%2fb` is one segment `a%2Fb`. A `%` not followed by two hex digits is
//!    rejected.
//! 3. Dot segments — `.` and `..`, including their encoded forms such as
//!    `%2e` and `%2E%2e`, which step 2 decoded — are removed with RFC 3986
//!    §5.2.4 `remove_dot_segments`; `..` never climbs above the root.
//! 4. Adjacent slashes are merged after step 3 (`//x` → `/x`, `/a///b` →
//!    `/a/b`), as Envoy (and so Envoy Gateway) does by default. A
//!    ClientTrafficPolicy with `path.disableMergeSlashes: true` keeps them
//!    ([`PathOptions::merge_slashes`] `false`); then PathPrefix `/x` does not
//!    match `//x`.
//!
//! [`canonicalize`] also applies `path.escapedSlashesAction`
//! ([`EscapedSlashes`]): unescaping `%2F`/`%5C` (both to `/`) happens in step
//! 2, so unescaped slashes take part in steps 3 and 4, as in Envoy (which
//! unescapes, then normalises, then merges).
//!
//! Nothing else is changed (no case folding, no decoding of reserved or
//! non-ASCII bytes), so the canonical form of an already canonical path is
//! itself and is returned borrowed.

use std::borrow::Cow;

pub use portcullis_ir::client::EscapedSlashes;

use crate::chars::is_unreserved;

/// How a path is canonicalised: the ClientTrafficPolicy `path` settings of
/// the listener (the default without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathOptions {
    /// `%2F`/`%5C` handling.
    pub escaped_slashes: EscapedSlashes,
    /// Merge adjacent slashes (default `true`).
    pub merge_slashes: bool,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            escaped_slashes: EscapedSlashes::KeepUnchanged,
            merge_slashes: true,
        }
    }
}

impl From<portcullis_ir::client::PathSettings> for PathOptions {
    fn from(p: portcullis_ir::client::PathSettings) -> Self {
        PathOptions {
            escaped_slashes: p.escaped_slashes,
            merge_slashes: !p.keep_duplicate_slashes,
        }
    }
}

/// A canonical path and whether escaped slashes were unescaped to get it
/// (`UnescapeAndRedirect` answers a redirect then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonical<'a> {
    /// The canonical path.
    pub path: Cow<'a, str>,
    /// `%2F`/`%5C` were found and unescaped.
    pub unescaped_slashes: bool,
}

/// Why a request path was rejected (the data plane answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in request path")]
    BadPercentEncoding,
    /// `%2F` or `%5C` under `escapedSlashesAction: RejectRequest`.
    #[error("escaped slash in request path")]
    EscapedSlash,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Canonicalise a request path with the default [`PathOptions`] (see the
/// module docs for the rule).
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    canonicalize(path, &PathOptions::default()).map(|c| c.path)
}

/// Canonicalise a request path with a listener's [`PathOptions`].
pub fn canonicalize<'a>(path: &'a str, opts: &PathOptions) -> Result<Canonical<'a>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let unescape = match opts.escaped_slashes {
        EscapedSlashes::KeepUnchanged => false,
        EscapedSlashes::RejectRequest => {
            if has_escaped_slash(path) {
                return Err(PathError::EscapedSlash);
            }
            false
        }
        EscapedSlashes::UnescapeAndRedirect | EscapedSlashes::UnescapeAndForward => true,
    };
    let unescaped_slashes = unescape && has_escaped_slash(path);
    let decoded = decode_unreserved(path, unescape)?;
    let mut path = if has_dot_segment(&decoded) {
        Cow::Owned(remove_dot_segments(&decoded))
    } else {
        decoded
    };
    if opts.merge_slashes && path.contains("//") {
        path = Cow::Owned(merge_slashes(&path));
    }
    Ok(Canonical {
        path,
        unescaped_slashes,
    })
}

/// Whether `path` holds `%2F`, `%2f`, `%5C` or `%5c`.
fn has_escaped_slash(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_uppercase()),
                (b'2', b'F') | (b'5', b'C')
            )
    })
}

/// Runs of `/` become one `/`.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Decode unreserved percent-encodings (and `%2F`/`%5C` to `/` when
/// `slashes`); upper-case the hex digits of the others.
fn decode_unreserved(path: &str, slashes: bool) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Ok(Cow::Borrowed(path));
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(&path[..first]);
    let mut i = first;
    let mut changed = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // Copy the run up to the next '%' (keeps multi-byte UTF-8 intact).
            let next = bytes[i..]
                .iter()
                .position(|&c| c == b'%')
                .map_or(bytes.len(), |p| i + p);
            out.push_str(&path[i..next]);
            i = next;
            continue;
        }
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadPercentEncoding);
        };
        let v = (h << 4) | l;
        if is_unreserved(v) {
            out.push(v as char);
            changed = true;
        } else if slashes && (v == b'/' || v == b'\\') {
            out.push('/');
            changed = true;
        } else {
            out.push('%');
            out.push(
                char::from_digit(u32::from(h), 16)
                    .unwrap_or('0')
                    .to_ascii_uppercase(),
            );
            out.push(
                char::from_digit(u32::from(l), 16)
                    .unwrap_or('0')
                    .to_ascii_uppercase(),
            );
            changed |= path[i + 1..i + 3].bytes().any(|c| c.is_ascii_lowercase());
        }
        i += 3;
    }
    Ok(if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(path)
    })
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').skip(1).any(|s| s == "." || s == "..")
}

/// RFC 3986 §5.2.4 for an absolute path (starts with `/`).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(p: &str) -> String {
        canonical_path(p).unwrap().into_owned()
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(c("/a/../b"), "/b");
        assert_eq!(c("/a/./b"), "/a/b");
        assert_eq!(c("/a/b/.."), "/a/");
        assert_eq!(c("/a/."), "/a/");
        assert_eq!(c("/.."), "/");
        assert_eq!(c("/../../x"), "/x", "never above root");
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_eq!(c("/%2e%2e/"), "/");
        assert_eq!(c("/a/%2E%2e/b"), "/b");
        assert_eq!(c("/a/%2e/b"), "/a/b");
        assert_eq!(c("/a%2eb"), "/a.b");
    }

    #[test]
    fn encoded_slash_stays_encoded() {
        assert_eq!(c("/a%2fb"), "/a%2Fb");
        assert_eq!(c("/a%2Fb"), "/a%2Fb");
        assert_eq!(
            c("/a%2F..%2Fb"),
            "/a%2F..%2Fb",
            "not a separator, so no dot segment"
        );
    }

    fn with(p: &str, escaped_slashes: EscapedSlashes, merge_slashes: bool) -> (String, bool) {
        let o = PathOptions {
            escaped_slashes,
            merge_slashes,
        };
        let c = canonicalize(p, &o).unwrap();
        (c.path.into_owned(), c.unescaped_slashes)
    }

    #[test]
    fn duplicate_slashes_are_merged_by_default() {
        assert_eq!(c("//x"), "/x");
        assert_eq!(c("/a///b//"), "/a/b/");
        assert_eq!(
            c("/a//../b"),
            "/a/b",
            "dot segments first (the empty segment is one), then merging"
        );
    }

    #[test]
    fn duplicate_slashes_kept_when_merging_is_disabled() {
        use EscapedSlashes::KeepUnchanged as K;
        assert_eq!(with("//x", K, false).0, "//x");
        assert_eq!(with("/a//b", K, false).0, "/a//b");
        assert_eq!(with("/a//../b", K, false).0, "/a/b");
    }

    #[test]
    fn escaped_slash_actions() {
        use EscapedSlashes::*;
        assert_eq!(
            with("/a%2fb", KeepUnchanged, true),
            ("/a%2Fb".into(), false)
        );
        assert_eq!(
            canonicalize(
                "/a%2Fb",
                &PathOptions {
                    escaped_slashes: RejectRequest,
                    merge_slashes: true
                }
            ),
            Err(PathError::EscapedSlash)
        );
        assert_eq!(
            canonicalize(
                "/a%5cb",
                &PathOptions {
                    escaped_slashes: RejectRequest,
                    merge_slashes: true
                }
            ),
            Err(PathError::EscapedSlash)
        );
        assert_eq!(
            with("/plain", RejectRequest, true),
            ("/plain".into(), false)
        );
        for a in [UnescapeAndForward, UnescapeAndRedirect] {
            assert_eq!(with("/a%2fb%5Cc", a, true), ("/a/b/c".into(), true));
            assert_eq!(
                with("/a%2F..%2Fb", a, true),
                ("/b".into(), true),
                "then dot segments"
            );
            assert_eq!(
                with("/a%2F%2Fb", a, true),
                ("/a/b".into(), true),
                "then merging"
            );
            assert_eq!(with("/a%2F%2Fb", a, false), ("/a//b".into(), true));
            assert_eq!(with("/a%41", a, true), ("/aA".into(), false));
        }
    }

    #[test]
    fn unreserved_decoded_reserved_kept() {
        assert_eq!(c("/%41%7e%5F"), "/A~_");
        assert_eq!(c("/%3f%20"), "/%3F%20");
        assert!(matches!(
            canonical_path("/plain/path").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            canonical_path("/a%2Fb").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(canonical_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(canonical_path("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(canonical_path("/a%4"), Err(PathError::BadPercentEncoding));
    }
}
