//! Path modifiers shared by URLRewrite and RequestRedirect.
//!
//! `ReplacePrefixMatch` follows the table in Gateway API
//! `HTTPPathModifier.ReplacePrefixMatch`: the matched prefix (whole path
//! elements, trailing `/` ignored) is replaced, a trailing `/` of the
//! replacement is ignored, and an empty result becomes `/`.

/// Replace the matched `prefix` (as stored by the route table: no trailing
/// `/`, `/` for root) of `path` with `replacement`.
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let rest = if prefix == "/" {
        if path == "/" { "" } else { path }
    } else {
        path.strip_prefix(prefix).unwrap_or(path)
    };
    let repl = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(repl.len() + rest.len() + 1);
    if !repl.is_empty() && !repl.starts_with('/') {
        out.push('/');
    }
    out.push_str(repl);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_route::path::prefix_key;

    #[test]
    fn spec_table() {
        // Request Path | Prefix Match | Replace Prefix | Modified Path
        let table = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/foo/bar", "/foo", "/", "/bar"),
            ("/", "/", "/bar", "/bar"),
            ("/x/y", "/", "/bar", "/bar/x/y"),
        ];
        for (path, prefix, repl, want) in table {
            assert_eq!(
                replace_prefix(path, prefix_key(prefix), repl),
                want,
                "{path} {prefix} {repl}"
            );
        }
    }
}
