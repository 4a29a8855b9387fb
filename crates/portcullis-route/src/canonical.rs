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
//! 4. Empty segments (`//`) are **kept as-is**: `//x` stays `//x`. They are
//!    legal in RFC 3986 and some backends give them meaning; collapsing them
//!    would make the gateway route differently from what the backend serves.
//!    PathPrefix `/x` therefore does not match `//x`.
//!
//! Nothing else is changed (no case folding, no decoding of reserved or
//! non-ASCII bytes), so the canonical form of an already canonical path is
//! itself and is returned borrowed.

use std::borrow::Cow;

use crate::chars::is_unreserved;

/// Why a request path was rejected (the data plane answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in request path")]
    BadPercentEncoding,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Canonicalise a request path (see the module docs for the rule).
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    if has_dot_segment(&decoded) {
        Ok(Cow::Owned(remove_dot_segments(&decoded)))
    } else {
        Ok(decoded)
    }
}

fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, PathError> {
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

    #[test]
    fn duplicate_slashes_are_kept() {
        assert_eq!(c("//x"), "//x");
        assert_eq!(c("/a//b"), "/a//b");
        assert_eq!(
            c("/a//../b"),
            "/a/b",
            "RFC 3986 treats the empty segment as a segment"
        );
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
