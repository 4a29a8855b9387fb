//! Reading the input: Ingresses, IngressClasses, and the Services and Secrets
//! the conversion looks into (named Service ports, basic-auth and CA Secrets).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::Value;

use crate::ImportError;

/// A text to read: a label (its file name, used in comments and errors) and
/// its YAML (or JSON) content, possibly several documents.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file name as the user gave it.
    pub name: String,
    /// The content.
    pub text: String,
}

/// One Ingress and where it came from.
#[derive(Clone, Debug)]
pub struct Found {
    /// The Ingress, namespace filled in.
    pub ingress: Ingress,
    /// The label of its source.
    pub file: String,
}

impl Found {
    /// Its namespace.
    pub fn namespace(&self) -> &str {
        self.ingress
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default()
    }
    /// Its name.
    pub fn name(&self) -> &str {
        self.ingress.metadata.name.as_deref().unwrap_or_default()
    }
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }
    /// Its annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.ingress
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
    }
}

/// Everything read.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Ingresses, sorted by namespace/name.
    pub ingresses: Vec<Found>,
    /// IngressClasses by name.
    pub classes: BTreeMap<String, IngressClass>,
    /// Services by `namespace/name`.
    pub services: BTreeMap<String, Service>,
    /// Secrets by `namespace/name`.
    pub secrets: BTreeMap<String, Secret>,
    /// Kinds that were read and not used, with their count.
    pub skipped: BTreeMap<String, usize>,
}

/// Read every source; `namespace` fills objects without one.
pub fn read(sources: &[Source], namespace: &str) -> Result<Inputs, ImportError> {
    let mut out = Inputs::default();
    for src in sources {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&src.text).map_err(|e| ImportError::Yaml {
                file: src.name.clone(),
                message: e.to_string(),
            })?;
        let mut queue: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        queue.reverse();
        while let Some(doc) = queue.pop() {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            if kind == "List" || kind.ends_with("List") {
                if let Some(items) = doc["items"].as_array() {
                    queue.extend(items.iter().rev().cloned());
                }
                continue;
            }
            let bad = |e: serde_json::Error| ImportError::Object {
                file: src.name.clone(),
                kind: kind.clone(),
                name: doc["metadata"]["name"].as_str().unwrap_or("?").to_string(),
                message: e.to_string(),
            };
            match (
                doc["apiVersion"].as_str().unwrap_or_default(),
                kind.as_str(),
            ) {
                ("networking.k8s.io/v1", "Ingress") => {
                    let mut ingress: Ingress = serde_json::from_value(doc.clone()).map_err(bad)?;
                    ingress
                        .metadata
                        .namespace
                        .get_or_insert_with(|| namespace.to_string());
                    out.ingresses.push(Found {
                        ingress,
                        file: src.name.clone(),
                    });
                }
                ("networking.k8s.io/v1", "IngressClass") => {
                    let c: IngressClass = serde_json::from_value(doc.clone()).map_err(bad)?;
                    out.classes
                        .insert(c.metadata.name.clone().unwrap_or_default(), c);
                }
                ("v1", "Service") => {
                    let s: Service = serde_json::from_value(doc.clone()).map_err(bad)?;
                    let ns = s.metadata.namespace.as_deref().unwrap_or(namespace);
                    let key = format!("{ns}/{}", s.metadata.name.as_deref().unwrap_or_default());
                    out.services.insert(key, s);
                }
                ("v1", "Secret") => {
                    let s: Secret = serde_json::from_value(doc.clone()).map_err(bad)?;
                    let ns = s.metadata.namespace.as_deref().unwrap_or(namespace);
                    let key = format!("{ns}/{}", s.metadata.name.as_deref().unwrap_or_default());
                    out.secrets.insert(key, s);
                }
                (api, _) => {
                    *out.skipped.entry(format!("{api} {kind}")).or_default() += 1;
                }
            }
        }
    }
    out.ingresses.sort_by_key(|f| f.key());
    Ok(out)
}

/// The bytes of a Secret's key (`data`, else `stringData`).
pub fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.0.clone());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| s.as_bytes().to_vec())
}
