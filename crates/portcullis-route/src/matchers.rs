//! Header and query parameter matchers.
//!
//! Gateway API `HTTPHeaderMatch`: header names are case-insensitive, values
//! are case-sensitive; `RegularExpression` must match the whole value here
//! (patterns are anchored at build time). When a request repeats a header,
//! the match succeeds if any one of its values matches.
//!
//! `HTTPQueryParamMatch`: names and values are case-sensitive; "it is
//! recommended that implementations should match against the first value of
//! the param": only the first occurrence of a name is considered. Names and
//! values are percent-decoded before comparison (`+` is not a space).

use std::borrow::Cow;

use http::HeaderName;
use regex::Regex;

/// Read access to request headers, implemented for [`http::HeaderMap`] and for
/// slices of `(name, value)` pairs.
pub trait HeaderLookup {
    /// Whether `pred` holds for any value of the header `name`.
    fn any_value(&self, name: &HeaderName, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

impl HeaderLookup for http::HeaderMap {
    fn any_value(&self, name: &HeaderName, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.get_all(name).iter().any(|v| pred(v.as_bytes()))
    }
}

impl<N: AsRef<str>, V: AsRef<str>> HeaderLookup for [(N, V)] {
    fn any_value(&self, name: &HeaderName, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.iter()
            .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(name.as_str()))
            .any(|(_, v)| pred(v.as_ref().as_bytes()))
    }
}

impl<N: AsRef<str>, V: AsRef<str>> HeaderLookup for Vec<(N, V)> {
    fn any_value(&self, name: &HeaderName, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.as_slice().any_value(name, pred)
    }
}

/// A compiled exact or regex value match.
#[derive(Clone, Debug)]
pub enum ValueMatcher {
    /// Exact, case-sensitive.
    Exact(Box<str>),
    /// Anchored regex.
    Regex(Regex),
}

impl ValueMatcher {
    /// Whether the value matches.
    pub fn matches(&self, value: &[u8]) -> bool {
        match self {
            ValueMatcher::Exact(e) => e.as_bytes() == value,
            ValueMatcher::Regex(r) => std::str::from_utf8(value).is_ok_and(|v| r.is_match(v)),
        }
    }
}

/// A compiled header match.
#[derive(Clone, Debug)]
pub struct HeaderMatcher {
    /// Header name.
    pub name: HeaderName,
    /// Value match.
    pub value: ValueMatcher,
}

impl HeaderMatcher {
    /// Whether the request headers satisfy this match.
    pub fn matches(&self, headers: &(impl HeaderLookup + ?Sized)) -> bool {
        headers.any_value(&self.name, &mut |v| self.value.matches(v))
    }
}

/// A compiled query parameter match.
#[derive(Clone, Debug)]
pub struct QueryMatcher {
    /// Parameter name (case-sensitive, decoded).
    pub name: Box<str>,
    /// Value match.
    pub value: ValueMatcher,
}

impl QueryMatcher {
    /// Whether the query string satisfies this match (first occurrence only).
    pub fn matches(&self, query: Option<&str>) -> bool {
        let Some(query) = query else { return false };
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if *percent_decode(k) == *self.name {
                return self.value.matches(percent_decode(v).as_bytes());
            }
        }
        false
    }
}

/// Percent-decode a query component; invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_case_insensitive_values_case_sensitive() {
        let m = HeaderMatcher {
            name: HeaderName::from_static("x-v"),
            value: ValueMatcher::Exact("One".into()),
        };
        assert!(m.matches(&[("X-V", "One")][..]));
        assert!(!m.matches(&[("x-v", "one")][..]));
        let mut hm = http::HeaderMap::new();
        hm.append("X-V", "two".parse().unwrap());
        hm.append("x-v", "One".parse().unwrap());
        assert!(m.matches(&hm), "any value of a repeated header");
    }

    #[test]
    fn query_first_value_decoded() {
        let m = QueryMatcher {
            name: "a b".into(),
            value: ValueMatcher::Exact("1/2".into()),
        };
        assert!(m.matches(Some("x=1&a%20b=1%2F2&a%20b=3")));
        assert!(
            !m.matches(Some("a%20b=3&a%20b=1%2F2")),
            "only the first occurrence counts"
        );
        assert!(!m.matches(None));
        let r = QueryMatcher {
            name: "v".into(),
            value: ValueMatcher::Regex(crate::path::anchored("[0-9]+").unwrap()),
        };
        assert!(r.matches(Some("v=123")));
        assert!(!r.matches(Some("v=12a")));
    }
}
