//! Path matching.
//!
//! Gateway API `PathMatchType`: "PathPrefix: Matches based on a URL path
//! prefix split by `/`. Matching is case-sensitive and done on a path element
//! by element basis. A path element refers to the list of labels in the path
//! split by the `/` separator. When specified, a trailing `/` is ignored. For
//! example, the paths `/abc`, `/abc/`, and `/abc/def` would all match the
//! prefix `/abc`, but the path `/abcd` would not."
//!
//! Paths are matched against the canonical path ([`crate::canonical_path`]),
//! in which `%2F` is not a separator.

use regex::Regex;

/// The index key of a prefix: trailing `/` removed, `/` for the root.
pub fn prefix_key(prefix: &str) -> &str {
    let t = prefix.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }
}

/// Whether `path` matches `prefix` on whole path elements.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let key = prefix_key(prefix);
    if key == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(key) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The prefix keys a path can match, longest first, ending with `/`.
///
/// `/foo/bar` yields `/foo/bar`, `/foo`, `/`; `/foo/` yields `/foo/`, `/foo`, `/`.
/// The cost is one step per path segment.
pub fn prefix_candidates(path: &str) -> PrefixCandidates<'_> {
    PrefixCandidates {
        path,
        end: Some(path.len()),
    }
}

/// Iterator of [`prefix_candidates`].
#[derive(Debug)]
pub struct PrefixCandidates<'a> {
    path: &'a str,
    end: Option<usize>,
}

impl<'a> Iterator for PrefixCandidates<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let end = self.end?;
        if end <= 1 {
            self.end = None;
            return Some("/");
        }
        let cand = &self.path[..end];
        self.end = Some(cand.rfind('/').unwrap_or(0));
        Some(cand)
    }
}

/// A compiled path match.
#[derive(Clone, Debug)]
pub enum PathMatcher {
    /// Exact path.
    Exact(Box<str>),
    /// Prefix on path elements, stored as its [`prefix_key`].
    Prefix(Box<str>),
    /// Anchored regular expression, with its source pattern.
    Regex(Regex, Box<str>),
}

impl PathMatcher {
    /// Whether the (canonical) path matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(p) => **p == *path,
            PathMatcher::Prefix(p) => prefix_matches(p, path),
            PathMatcher::Regex(r, _) => r.is_match(path),
        }
    }
}

/// Compile a regex that must match the whole input.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_whole_elements_only() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(
            prefix_matches("/foo/", "/foo"),
            "trailing slash in the prefix is ignored"
        );
        assert!(prefix_matches("/foo/", "/foo/bar"));
        assert!(!prefix_matches("/foo/", "/foobar"));
        assert!(prefix_matches("/", "/anything"));
        assert!(
            !prefix_matches("/a%2Fb", "/a/b"),
            "encoded slash is not a separator"
        );
        assert!(
            !prefix_matches("/a", "/a%2Fb"),
            "encoded slash does not end an element"
        );
    }

    #[test]
    fn candidates_walk_segments_longest_first() {
        let v: Vec<_> = prefix_candidates("/foo/bar").collect();
        assert_eq!(v, ["/foo/bar", "/foo", "/"]);
        let v: Vec<_> = prefix_candidates("/foo/").collect();
        assert_eq!(v, ["/foo/", "/foo", "/"]);
        let v: Vec<_> = prefix_candidates("/").collect();
        assert_eq!(v, ["/"]);
        let v: Vec<_> = prefix_candidates("/a//b").collect();
        assert_eq!(v, ["/a//b", "/a/", "/a", "/"]);
    }

    #[test]
    fn regex_is_anchored() {
        let r = anchored("/v[0-9]").unwrap();
        assert!(r.is_match("/v1"));
        assert!(!r.is_match("/v1/x"));
        assert!(!r.is_match("/x/v1"));
        let alt = anchored("/a|/b").unwrap();
        assert!(alt.is_match("/b"));
        assert!(!alt.is_match("/bx"));
    }
}
