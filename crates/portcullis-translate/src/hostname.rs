//! Hostname matching and intersection (Gateway API `Hostname` semantics).
//!
//! A wildcard `*.example.com` matches one or more DNS labels in front of
//! `example.com`, never `example.com` itself.

/// Whether `name` (exact or wildcard) matches the concrete or wildcard `other`.
fn wildcard_covers(wild: &str, other: &str) -> bool {
    let suffix = &wild[1..]; // ".example.com"
    other.len() > suffix.len() && other.ends_with(suffix)
}

/// The intersection of a listener hostname and a route hostname, if any.
/// `None` listener hostname matches everything.
///
/// Spec (HTTPRoute `hostnames`): a route hostname matches a listener hostname
/// if equal, or if one is a wildcard that covers the other; the more specific
/// of the two is what is served.
pub(crate) fn intersect(listener: Option<&str>, route: &str) -> Option<String> {
    let Some(l) = listener else {
        return Some(route.to_string());
    };
    if l == route {
        return Some(route.to_string());
    }
    let lw = l.starts_with("*.");
    let rw = route.starts_with("*.");
    match (lw, rw) {
        (true, false) if wildcard_covers(l, route) => Some(route.to_string()),
        (false, true) if wildcard_covers(route, l) => Some(l.to_string()),
        (true, true) => {
            if wildcard_covers(l, route) {
                Some(route.to_string())
            } else if wildcard_covers(route, l) {
                Some(l.to_string())
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The hostnames a route serves on a listener: `Ok(vec![])` means "every
/// hostname of the listener"; `Err(())` means no intersection at all.
pub(crate) fn route_hostnames_on(
    listener: Option<&str>,
    route: &[String],
) -> Result<Vec<String>, ()> {
    if route.is_empty() {
        return Ok(listener.map(|l| vec![l.to_string()]).unwrap_or_default());
    }
    let mut out: Vec<String> = route
        .iter()
        .filter_map(|r| intersect(listener, r))
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() { Err(()) } else { Ok(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcards() {
        assert_eq!(intersect(None, "a.com").as_deref(), Some("a.com"));
        assert_eq!(intersect(Some("a.com"), "a.com").as_deref(), Some("a.com"));
        assert_eq!(intersect(Some("a.com"), "b.com"), None);
        assert_eq!(
            intersect(Some("*.a.com"), "x.a.com").as_deref(),
            Some("x.a.com")
        );
        assert_eq!(
            intersect(Some("*.a.com"), "x.y.a.com").as_deref(),
            Some("x.y.a.com")
        );
        // A wildcard never matches the bare domain.
        assert_eq!(intersect(Some("*.a.com"), "a.com"), None);
        assert_eq!(
            intersect(Some("x.a.com"), "*.a.com").as_deref(),
            Some("x.a.com")
        );
        assert_eq!(
            intersect(Some("*.a.com"), "*.b.a.com").as_deref(),
            Some("*.b.a.com")
        );
        assert_eq!(
            intersect(Some("*.b.a.com"), "*.a.com").as_deref(),
            Some("*.b.a.com")
        );
        assert_eq!(
            intersect(Some("*.a.com"), "*.a.com").as_deref(),
            Some("*.a.com")
        );
        assert_eq!(intersect(Some("*.a.com"), "*.b.com"), None);
    }

    #[test]
    fn route_hostnames() {
        assert_eq!(route_hostnames_on(None, &[]), Ok(vec![]));
        assert_eq!(
            route_hostnames_on(Some("a.com"), &[]),
            Ok(vec!["a.com".to_string()])
        );
        assert_eq!(
            route_hostnames_on(Some("a.com"), &["b.com".into()]),
            Err(())
        );
    }
}
