//! Ingress paths → HTTPRoute path matches, with `use-regex` and
//! `rewrite-target` as ingress-nginx reads them.

use serde_json::{Value, json};

/// A converted path.
#[derive(Clone, Debug, PartialEq)]
pub struct PathOut {
    /// The `path` of an `HTTPRouteMatch`.
    pub path: Value,
    /// The `path` of a `URLRewrite` filter, if any.
    pub rewrite: Option<Value>,
    /// Why the rewrite could not be expressed (the rule is kept without it).
    pub problem: Option<String>,
    /// A difference worth saying for this path.
    pub differs: Option<String>,
}

/// Characters that make a path a regular expression (`.` alone does not:
/// it matches itself too).
fn has_meta(p: &str) -> bool {
    p.chars().any(|c| "*+?()[]{}|^$\\".contains(c))
}

/// The regex value for an nginx `~* ^<path>` location: a prefix match
/// unless the path ends with `$`.
fn regex_value(p: &str) -> String {
    let p = p.strip_prefix('^').unwrap_or(p);
    match p.strip_suffix('$') {
        Some(anchored) if !anchored.ends_with('\\') => anchored.to_string(),
        _ => format!("{p}.*"),
    }
}

/// `ReplacePrefixMatch` value for the part of a target before its capture.
fn prefix_target(t: &str) -> String {
    let t = t.trim_end_matches('/');
    if t.is_empty() { "/".into() } else { t.into() }
}

/// Convert one path. `regex` is ingress-nginx's regex mode (`use-regex`, or
/// implied by `rewrite-target`); `rewrite` is the `rewrite-target` value.
pub fn convert(path: &str, path_type: &str, regex: bool, rewrite: Option<&str>) -> PathOut {
    let path = if path.is_empty() { "/" } else { path };
    let mut out = PathOut {
        path: json!({"type": "PathPrefix", "value": path}),
        rewrite: None,
        problem: None,
        differs: None,
    };
    if path_type == "Exact" {
        out.path = json!({"type": "Exact", "value": path});
        match rewrite {
            Some(t) if t.contains('$') => {
                out.problem = Some(format!(
                    "rewrite-target {t:?} refers to capture groups, and the Exact path {path:?} has none"
                ));
            }
            Some(t) => out.rewrite = Some(json!({"type": "ReplaceFullPath", "replaceFullPath": t})),
            None => {}
        }
        return out;
    }
    if let Some(t) = rewrite.filter(|t| t.contains('$')) {
        // The documented idiom: `/p(/|$)(.*)` with `/t/$2`.
        if let (Some(p), Some(tp)) = (path.strip_suffix("(/|$)(.*)"), t.strip_suffix("$2"))
            && !has_meta(p)
            && !tp.contains('$')
        {
            out.path = json!({"type": "PathPrefix", "value": if p.is_empty() { "/" } else { p }});
            out.rewrite = Some(
                json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix_target(tp)}),
            );
            return out;
        }
        // `/p/(.*)` with `/t/$1`: also matches `/p` itself here.
        if let (Some(p), Some(tp)) = (path.strip_suffix("/(.*)"), t.strip_suffix("$1"))
            && !p.is_empty()
            && !has_meta(p)
            && !tp.contains('$')
        {
            out.path = json!({"type": "PathPrefix", "value": p});
            out.rewrite = Some(
                json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix_target(tp)}),
            );
            out.differs = Some(format!(
                "{path:?} became PathPrefix {p:?}, which also matches {p:?} itself (nginx: only {p}/...)"
            ));
            return out;
        }
        out.problem = Some(format!(
            "rewrite-target {t:?} uses capture groups of {path:?} in a way URLRewrite cannot express \
             (only `/p(/|$)(.*)` with `/t/$2` and `/p/(.*)` with `/t/$1` are); the rule is kept \
             without a rewrite: rewrite in the backend or change the paths"
        ));
        out.path = json!({"type": "RegularExpression", "value": regex_value(path)});
        return out;
    }
    if regex && has_meta(path) {
        out.path = json!({"type": "RegularExpression", "value": regex_value(path)});
    } else if has_meta(path) {
        out.problem = Some(format!(
            "path {path:?} holds regular-expression characters but use-regex is not set; \
             Gateway API paths cannot hold them literally"
        ));
        out.path = json!({"type": "RegularExpression", "value": regex::escape_all(path) + ".*"});
    }
    if let Some(t) = rewrite {
        out.rewrite = Some(json!({"type": "ReplaceFullPath", "replaceFullPath": t}));
    }
    out
}

mod regex {
    /// Escape every regular-expression character.
    pub fn escape_all(s: &str) -> String {
        let mut o = String::new();
        for c in s.chars() {
            if "\\.+*?()|[]{}^$".contains(c) {
                o.push('\\');
            }
            o.push(c);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idiom_becomes_replace_prefix_match() {
        let o = convert(
            "/something(/|$)(.*)",
            "ImplementationSpecific",
            true,
            Some("/$2"),
        );
        assert_eq!(o.path, json!({"type": "PathPrefix", "value": "/something"}));
        assert_eq!(
            o.rewrite,
            Some(json!({"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}))
        );
        assert!(o.problem.is_none());
    }

    #[test]
    fn other_captures_are_reported() {
        let o = convert(
            "/(a|b)/(.*)",
            "ImplementationSpecific",
            true,
            Some("/$2/$1"),
        );
        assert!(o.problem.is_some());
        assert_eq!(o.rewrite, None);
        assert_eq!(o.path["type"], "RegularExpression");
    }

    #[test]
    fn plain_target_replaces_the_whole_path() {
        let o = convert("/app", "Prefix", true, Some("/"));
        assert_eq!(o.path, json!({"type": "PathPrefix", "value": "/app"}));
        assert_eq!(
            o.rewrite,
            Some(json!({"type": "ReplaceFullPath", "replaceFullPath": "/"}))
        );
    }

    #[test]
    fn regex_paths_are_prefixes_unless_anchored() {
        assert_eq!(
            convert("/api/v[0-9]+", "ImplementationSpecific", true, None).path["value"],
            "/api/v[0-9]+.*"
        );
        assert_eq!(
            convert("/exact/[a-z]+$", "ImplementationSpecific", true, None).path["value"],
            "/exact/[a-z]+"
        );
    }
}
