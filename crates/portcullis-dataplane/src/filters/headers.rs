//! RequestHeaderModifier / ResponseHeaderModifier.
//!
//! Gateway API `HTTPHeaderFilter`: `set` overwrites, `add` appends,
//! `remove` deletes; header names are case-insensitive. Applied in the
//! order set, add, remove.

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_ir::HeaderModifier;

/// Compiled header modifications.
#[derive(Debug, Default)]
pub struct HeaderMods {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

fn pair((n, v): &(String, String)) -> Result<(HeaderName, HeaderValue), String> {
    let name =
        HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("header name {n:?}: {e}"))?;
    let value = HeaderValue::from_str(v).map_err(|e| format!("header value for {n:?}: {e}"))?;
    Ok((name, value))
}

impl HeaderMods {
    /// Compile; an invalid name or value makes the filter invalid.
    pub fn new(m: &HeaderModifier) -> Result<Self, String> {
        Ok(HeaderMods {
            set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|e| format!("header name {n:?}: {e}"))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Apply to a header map.
    pub fn apply(&self, h: &mut HeaderMap) {
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            h.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            h.remove(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_add_remove_case_insensitive() {
        let m = HeaderMods::new(&HeaderModifier {
            set: vec![("X-Set".into(), "s".into())],
            add: vec![("X-Add".into(), "a".into())],
            remove: vec!["x-remove".into()],
        })
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-set", HeaderValue::from_static("old"));
        h.insert("x-add", HeaderValue::from_static("old"));
        h.insert("X-Remove", HeaderValue::from_static("gone"));
        m.apply(&mut h);
        assert_eq!(h.get_all("x-set").iter().collect::<Vec<_>>(), ["s"]);
        assert_eq!(h.get_all("x-add").iter().collect::<Vec<_>>(), ["old", "a"]);
        assert!(h.get("x-remove").is_none());
        assert!(
            HeaderMods::new(&HeaderModifier {
                set: vec![("bad name".into(), "x".into())],
                ..Default::default()
            })
            .is_err()
        );
    }
}
