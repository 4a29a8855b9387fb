//! Manifest handling: loading upstream YAML, the upstream Applier's rewriting
//! (gatewayClassName, controllerName, static address placeholders), and writing
//! documents back as files Portcullis watches.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Options that the upstream `Applier` applies to every manifest.
#[derive(Debug, Clone)]
pub struct Applier {
    pub gateway_class: String,
    pub controller_name: String,
    pub usable_addresses: Vec<Value>,
    pub unusable_addresses: Vec<Value>,
}

/// Parses a multi-document YAML text into JSON values, dropping empty documents.
pub fn parse_yaml_docs(text: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).context("parsing YAML")?;
    Ok(docs
        .into_iter()
        .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()))
        .collect())
}

/// Reads and parses a YAML file.
pub fn load_yaml_file(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_yaml_docs(&text).with_context(|| format!("in {}", path.display()))
}

/// Serialises documents as a multi-document file: pretty JSON (a YAML subset,
/// free of YAML's implicit typing) separated by `---`.
pub fn render_docs(docs: &[Value]) -> String {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(doc).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Writes documents atomically (write to a hidden temp file, then rename), so the
/// watcher never sees a half-written file.
pub fn write_docs(path: &Path, docs: &[Value]) -> Result<()> {
    let dir = path.parent().context("manifest path without parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path
        .file_name()
        .context("manifest path without file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    std::fs::write(&tmp, render_docs(docs))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub fn kind(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or("")
}

pub fn name(doc: &Value) -> &str {
    doc.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn namespace(doc: &Value) -> &str {
    doc.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn api_group(doc: &Value) -> &str {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match api_version.rsplit_once('/') {
        Some((group, _)) => group,
        None => "",
    }
}

impl Applier {
    /// Applies the upstream Applier's preparation to each document.
    pub fn prepare(&self, docs: &mut [Value]) {
        for doc in docs.iter_mut() {
            match kind(doc) {
                "GatewayClass" => {
                    doc["spec"]["controllerName"] = json!(self.controller_name);
                }
                "Gateway" => self.prepare_gateway(doc),
                _ => {}
            }
        }
    }

    fn prepare_gateway(&self, doc: &mut Value) {
        doc["spec"]["gatewayClassName"] = json!(self.gateway_class);
        let Some(addresses) = doc
            .pointer("/spec/addresses")
            .and_then(Value::as_array)
            .cloned()
        else {
            return;
        };
        if addresses.is_empty() {
            return;
        }
        let mut usable = false;
        let mut unusable = false;
        let mut special = Vec::new();
        for addr in &addresses {
            match addr.get("value").and_then(Value::as_str) {
                Some("PLACEHOLDER_USABLE_ADDRS") => usable = true,
                Some("PLACEHOLDER_UNUSABLE_ADDRS") => unusable = true,
                _ => {}
            }
            if addr.get("type").and_then(Value::as_str) == Some("test/fake-invalid-type") {
                special.push(addr.clone());
            }
        }
        let mut overlay = special;
        if unusable {
            overlay.extend(self.unusable_addresses.iter().cloned());
        }
        if usable {
            overlay.extend(self.usable_addresses.iter().cloned());
        }
        // Like unstructured.SetNestedSlice with a nil slice: the field is dropped.
        match doc["spec"].as_object_mut() {
            Some(spec) if overlay.is_empty() => {
                spec.remove("addresses");
            }
            _ => doc["spec"]["addresses"] = Value::Array(overlay),
        }
    }
}

/// Identity of an object as `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Kinds that `/status` reports.
pub const STATUS_KINDS: &[&str] = &[
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "BackendTLSPolicy",
];

/// Keys of the Gateway API objects among `docs`.
pub fn status_keys(docs: &[Value]) -> Vec<ObjKey> {
    docs.iter()
        .filter(|d| api_group(d) == "gateway.networking.k8s.io" && STATUS_KINDS.contains(&kind(d)))
        .map(|d| ObjKey {
            kind: kind(d).to_string(),
            namespace: namespace(d).to_string(),
            name: name(d).to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applier() -> Applier {
        Applier {
            gateway_class: "portcullis".into(),
            controller_name: "portcullis.dev/gateway-controller".into(),
            usable_addresses: vec![json!({"type": "IPAddress", "value": "127.0.10.200"})],
            unusable_addresses: vec![json!({"type": "IPAddress", "value": "192.0.2.1"})],
        }
    }

    #[test]
    fn prepare_rewrites_class_controller_and_placeholders() {
        let mut docs = parse_yaml_docs(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: gc
spec:
  controllerName: "{GATEWAY_CONTROLLER_NAME}"
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: ns
spec:
  gatewayClassName: "{GATEWAY_CLASS_NAME}"
  addresses:
  - value: PLACEHOLDER_USABLE_ADDRS
  - type: test/fake-invalid-type
    value: x
  - value: PLACEHOLDER_UNUSABLE_ADDRS
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
"#,
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        applier().prepare(&mut docs);
        assert_eq!(
            docs[0]["spec"]["controllerName"],
            "portcullis.dev/gateway-controller"
        );
        assert_eq!(docs[1]["spec"]["gatewayClassName"], "portcullis");
        assert_eq!(
            docs[1]["spec"]["addresses"],
            json!([
                {"type": "test/fake-invalid-type", "value": "x"},
                {"type": "IPAddress", "value": "192.0.2.1"},
                {"type": "IPAddress", "value": "127.0.10.200"},
            ])
        );
        assert_eq!(docs[1]["spec"]["listeners"][0]["port"], 80);
    }

    #[test]
    fn render_round_trips_through_yaml() {
        let docs = vec![
            json!({"kind": "A", "metadata": {"name": "x"}, "data": {"v": "true", "n": "0123"}}),
            json!({"kind": "B", "metadata": {"name": "y"}}),
        ];
        let back = parse_yaml_docs(&render_docs(&docs)).unwrap();
        assert_eq!(back, docs);
    }

    #[test]
    fn status_keys_only_gateway_api_kinds() {
        let docs = vec![
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": "n"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}}),
            json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "g", "namespace": "n"}}),
        ];
        let keys = status_keys(&docs);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].to_string(), "HTTPRoute n/r");
    }
}
