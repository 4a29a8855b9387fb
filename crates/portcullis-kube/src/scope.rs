//! Which namespaces the controller reads: `--watch-namespaces` and `--secret-namespaces`.
//!
//! By default every namespaced kind is listed and watched cluster-wide, Secrets
//! included (by metadata; only referenced ones are read, but RBAC cannot say
//! "referenced": the grant is `get` on every Secret). With `--watch-namespaces`
//! every namespaced kind is read only in the listed namespaces (one watch per
//! namespace, so namespaced `Role`s are enough); with `--secret-namespaces`
//! Secrets are read only in those (a subset of the watched namespaces). A
//! reference to a Secret elsewhere is then a Secret that does not exist.
//! Cluster-scoped kinds (GatewayClass, Namespace, IngressClass) are always read
//! cluster-wide.

use std::collections::BTreeSet;

/// Why a namespace list is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not a namespace name (an RFC 1123 label).
    #[error(
        "{flag}: {name:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
    )]
    InvalidName {
        /// The flag the name came from.
        flag: &'static str,
        /// The name.
        name: String,
    },
    /// A Secret namespace that is not watched: its ReferenceGrants would not be seen.
    #[error(
        "--secret-namespaces: {0:?} is not in --watch-namespaces (Secrets are read only where the objects referencing them, and their ReferenceGrants, are watched)"
    )]
    NotWatched(String),
}

/// The namespaces read: `None` means every namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    watch: Option<BTreeSet<String>>,
    secrets: Option<BTreeSet<String>>,
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn set(flag: &'static str, names: &[String]) -> Result<Option<BTreeSet<String>>, ScopeError> {
    let mut out = BTreeSet::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !is_label(n) {
            return Err(ScopeError::InvalidName {
                flag,
                name: n.to_string(),
            });
        }
        out.insert(n.to_string());
    }
    Ok((!out.is_empty()).then_some(out))
}

impl Scope {
    /// Every namespace, Secrets included.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// From the two lists (empty entries are ignored; an empty list means
    /// every namespace, or for Secrets every watched namespace).
    pub fn new(watch: &[String], secrets: &[String]) -> Result<Scope, ScopeError> {
        let watch = set("--watch-namespaces", watch)?;
        let secrets = set("--secret-namespaces", secrets)?;
        if let (Some(w), Some(s)) = (&watch, &secrets)
            && let Some(n) = s.difference(w).next()
        {
            return Err(ScopeError::NotWatched(n.clone()));
        }
        Ok(Scope { watch, secrets })
    }

    /// The watched namespaces, `None` for all.
    pub fn watched(&self) -> Option<&BTreeSet<String>> {
        self.watch.as_ref()
    }

    /// The namespaces Secrets are read in, `None` for all.
    pub fn secret_namespaces(&self) -> Option<&BTreeSet<String>> {
        self.secrets.as_ref().or(self.watch.as_ref())
    }

    /// One list/watch per entry for a namespaced kind: `None` is cluster-wide.
    pub fn watch_lists(&self) -> Vec<Option<String>> {
        lists(self.watched())
    }

    /// One list/watch per entry for Secrets: `None` is cluster-wide.
    pub fn secret_lists(&self) -> Vec<Option<String>> {
        lists(self.secret_namespaces())
    }

    /// Whether namespaced objects of `ns` are read.
    pub fn watches(&self, ns: &str) -> bool {
        self.watched().is_none_or(|w| w.contains(ns))
    }

    /// Whether Secrets of `ns` are read.
    pub fn reads_secrets(&self, ns: &str) -> bool {
        self.secret_namespaces().is_none_or(|w| w.contains(ns))
    }
}

fn lists(set: Option<&BTreeSet<String>>) -> Vec<Option<String>> {
    match set {
        None => vec![None],
        Some(s) => s.iter().cloned().map(Some).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn everything_by_default() {
        let s = Scope::new(&[], &[]).unwrap();
        assert_eq!(s, Scope::all());
        assert_eq!(s.watch_lists(), vec![None]);
        assert_eq!(s.secret_lists(), vec![None]);
        assert!(s.watches("any") && s.reads_secrets("any"));
    }

    #[test]
    fn watched_namespaces_limit_secrets_too() {
        let s = Scope::new(&v(&["b", "a", "a", ""]), &[]).unwrap();
        assert_eq!(s.watch_lists(), vec![Some("a".into()), Some("b".into())]);
        assert_eq!(s.secret_lists(), s.watch_lists());
        assert!(s.watches("a") && !s.watches("c") && !s.reads_secrets("c"));
    }

    #[test]
    fn secrets_in_listed_namespaces_only() {
        let s = Scope::new(&[], &v(&["certs"])).unwrap();
        assert_eq!(s.watch_lists(), vec![None]);
        assert_eq!(s.secret_lists(), vec![Some("certs".into())]);
        assert!(s.watches("apps") && !s.reads_secrets("apps") && s.reads_secrets("certs"));
        let s = Scope::new(&v(&["a", "b"]), &v(&["b"])).unwrap();
        assert_eq!(s.secret_lists(), vec![Some("b".into())]);
    }

    #[test]
    fn refused() {
        assert_eq!(
            Scope::new(&v(&["a"]), &v(&["b"])),
            Err(ScopeError::NotWatched("b".into()))
        );
        for bad in ["A", "a_b", "-a", "a.b", &"x".repeat(64)] {
            assert!(
                matches!(
                    Scope::new(&v(&[bad]), &[]),
                    Err(ScopeError::InvalidName { .. })
                ),
                "{bad}"
            );
        }
    }
}
