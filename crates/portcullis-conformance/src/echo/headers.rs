//! Header naming as Go's `net/http` presents it (`textproto.CanonicalMIMEHeaderKey`).

/// Canonicalises a header name the way Go does: the first letter and every letter
/// after a hyphen upper-case, the rest lower-case. Names containing a byte that is
/// not a valid token character (for example a space) are returned unchanged.
pub fn canonical_header_name(name: &str) -> String {
    let valid = !name.is_empty() && name.bytes().all(is_token_byte);
    if !valid {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c.to_ascii_lowercase());
        }
        upper = c == '-';
    }
    out
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalises_like_go() {
        assert_eq!(canonical_header_name("x-foo-bar"), "X-Foo-Bar");
        assert_eq!(canonical_header_name("USER-AGENT"), "User-Agent");
        assert_eq!(canonical_header_name("x_forwarded"), "X_forwarded");
        assert_eq!(canonical_header_name("content-type"), "Content-Type");
        assert_eq!(canonical_header_name("bad header"), "bad header");
    }
}
