//! Character classes of the URI and HTTP grammars, shared by request
//! parsing (here), translation's checks of configured values and the data
//! plane's HTTP/1 encoders, so that all three agree byte for byte.

/// RFC 3986 §2.3 `unreserved`: `A-Z a-z 0-9 - . _ ~`.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §2.2 `sub-delims`: `! $ & ' ( ) * + , ; =`.
pub fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// RFC 3986 §3.3 `pchar` without percent-encodings: `unreserved`,
/// `sub-delims`, `:` and `@`.
pub fn is_pchar(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || b == b':' || b == b'@'
}

/// RFC 9110 §5.6.2 `tchar` (header names, methods, cookie names).
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A byte RFC 9110 §5.5 allows in a field value: visible ASCII, space,
/// horizontal tab and `obs-text` (0x80 and above); never CR, LF, NUL or
/// another control byte.
pub fn is_field_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | 0x20..=0x7E | 0x80..)
}
