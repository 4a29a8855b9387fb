//! Rendering: sorted objects as YAML, each with a comment naming its origin.

use std::collections::BTreeMap;

use serde_json::Value;

/// One output object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The object.
    pub value: Value,
    /// Where it comes from (`Ingress ns/name`, ...), sorted.
    pub from: Vec<String>,
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    /// (kind rank, namespace, name): the output order.
    pub fn sort_key(&self) -> (usize, String, String) {
        const ORDER: [&str; 10] = [
            "GatewayClass",
            "Gateway",
            "HTTPRoute",
            "TLSRoute",
            "SecurityPolicy",
            "BackendTrafficPolicy",
            "BackendTLSPolicy",
            "ReferenceGrant",
            "Secret",
            "ConfigMap",
        ];
        let rank = ORDER
            .iter()
            .position(|k| *k == self.kind())
            .unwrap_or(ORDER.len());
        let m = &self.value["metadata"];
        (
            rank,
            m["namespace"].as_str().unwrap_or_default().to_string(),
            m["name"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn yaml(&self) -> String {
        let mut s = String::new();
        for f in &self.from {
            s.push_str(&format!("# from {f}\n"));
        }
        s.push_str(&serde_saphyr::to_string(&self.value).unwrap_or_default());
        s
    }
}

/// Objects as one stream.
pub fn stream(objects: &[Object]) -> String {
    objects
        .iter()
        .map(Object::yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Objects as one stream per kind.
pub fn files(objects: &[Object]) -> Vec<(String, String)> {
    let mut by: BTreeMap<String, Vec<Object>> = BTreeMap::new();
    for o in objects {
        by.entry(format!("{}.yaml", o.kind().to_ascii_lowercase()))
            .or_default()
            .push(o.clone());
    }
    by.into_iter().map(|(f, v)| (f, stream(&v))).collect()
}
