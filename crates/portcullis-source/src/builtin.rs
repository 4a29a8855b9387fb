//! Built-in Kubernetes kinds (Service, EndpointSlice, Secret, ConfigMap,
//! Namespace, Ingress, IngressClass): the defaults the API server applies and the validations users
//! most often trip over. They have no CRD schema; the typed k8s-openapi
//! decoding afterwards catches type errors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use base64::Engine;
use portcullis_store::{Kind, types};
use regex::Regex;
use serde_json::{Map, Value};

use crate::schema::{FieldError, show};
use crate::yaml::FieldPath;

static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap());
static DNS_1035: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").unwrap());
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
});
static CONFIG_KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[-._a-zA-Z0-9]+$").unwrap());
static IANA_SVC_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$").unwrap());
static QUALIFIED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap());
static LABEL_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap());

/// Why `s` is not a DNS-1123 label (`None` when it is one).
pub(crate) fn dns_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        Some(format!(
            "{s:?} is longer than 63 characters (a DNS-1123 label)"
        ))
    } else if !DNS_LABEL.is_match(s) {
        Some(format!(
            "{s:?} is not a valid DNS-1123 label: lower case alphanumeric characters or '-', starting and ending with an alphanumeric character"
        ))
    } else {
        None
    }
}

/// Why `s` is not a DNS-1035 label (`None` when it is one).
pub(crate) fn dns_1035_label(s: &str) -> Option<String> {
    if s.len() > 63 {
        Some(format!(
            "{s:?} is longer than 63 characters (a DNS-1035 label)"
        ))
    } else if !DNS_1035.is_match(s) {
        Some(format!(
            "{s:?} is not a valid DNS-1035 label: lower case alphanumeric characters or '-', starting with a letter and ending with an alphanumeric character"
        ))
    } else {
        None
    }
}

/// Why `s` is not a DNS-1123 subdomain (`None` when it is one).
pub(crate) fn dns_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        Some(format!(
            "{s:?} is longer than 253 characters (a DNS-1123 subdomain)"
        ))
    } else if !DNS_SUBDOMAIN.is_match(s) {
        Some(format!(
            "{s:?} is not a valid DNS-1123 subdomain: lower case alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character"
        ))
    } else {
        None
    }
}

/// Why `s` is not a qualified name such as a label key `example.com/app` (`None` when it is one).
pub(crate) fn qualified_name(s: &str) -> Option<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && (p.is_empty() || dns_subdomain(p).is_some())
    {
        return Some(format!(
            "{s:?}: the prefix before '/' must be a DNS-1123 subdomain"
        ));
    }
    if name.is_empty() || name.len() > 63 || !QUALIFIED_NAME.is_match(name) {
        return Some(format!(
            "{s:?} is not a valid qualified name: at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character, with an optional DNS subdomain prefix and '/'"
        ));
    }
    None
}

/// Why `s` is not a valid label value (`None` when it is one).
pub(crate) fn label_value(s: &str) -> Option<String> {
    if s.len() > 63 || !LABEL_VALUE.is_match(s) {
        Some(format!(
            "{s:?} is not a valid label value: at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    } else {
        None
    }
}

struct Checker<'a> {
    errors: &'a mut Vec<FieldError>,
}

impl Checker<'_> {
    fn err(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    fn port(&mut self, obj: &Map<String, Value>, field: &str, path: &FieldPath, required: bool) {
        match obj.get(field) {
            None if required => self.err(&path.field(field), "required value is missing"),
            None => {}
            Some(v) => match v.as_i64() {
                Some(p) if (1..=65535).contains(&p) => {}
                _ => self.err(
                    &path.field(field),
                    format!("must be a port number between 1 and 65535, is {}", show(v)),
                ),
            },
        }
    }

    fn protocol(&mut self, obj: &mut Map<String, Value>, path: &FieldPath) {
        let p = obj.entry("protocol").or_insert_with(|| Value::from("TCP"));
        if !matches!(p.as_str(), Some("TCP" | "UDP" | "SCTP")) {
            let msg = format!(
                "unsupported value {}: supported values: \"TCP\", \"UDP\", \"SCTP\"",
                show(p)
            );
            self.err(&path.field("protocol"), msg);
        }
    }

    /// Port names: DNS labels, unique, and required when there are several ports.
    fn port_names(&mut self, ports: &[Value], path: &FieldPath, required: bool) {
        let mut seen = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let at = path.index(i).field("name");
            match p
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                None if required && ports.len() > 1 => self.err(
                    &at,
                    "required value is missing: every port must be named when there are several",
                ),
                None => {}
                Some(n) => {
                    if let Some(e) = dns_label(n) {
                        self.err(&at, e);
                    } else if seen.contains(&n) {
                        self.err(&at, format!("duplicate port name {n:?}"));
                    }
                    seen.push(n);
                }
            }
        }
    }

    fn service(&mut self, v: &mut Value) {
        let spec_path = FieldPath::default().field("spec");
        let Some(spec) = v
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| Value::Object(Map::new())))
        else {
            return;
        };
        let Some(spec) = spec.as_object_mut() else {
            return;
        };
        let ty = spec
            .entry("type")
            .or_insert_with(|| Value::from("ClusterIP"))
            .clone();
        let ty = ty.as_str().unwrap_or_default();
        if !matches!(
            ty,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            let msg = format!(
                "unsupported value {ty:?}: supported values: \"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\""
            );
            self.err(&spec_path.field("type"), msg);
        }
        if ty == "ExternalName" {
            match spec.get("externalName").and_then(Value::as_str) {
                None | Some("") => self.err(
                    &spec_path.field("externalName"),
                    "required value is missing for type ExternalName",
                ),
                Some(n) => {
                    if let Some(e) = dns_subdomain(n.trim_end_matches('.')) {
                        self.err(&spec_path.field("externalName"), e);
                    }
                }
            }
        }
        spec.entry("sessionAffinity")
            .or_insert_with(|| Value::from("None"));
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        if let Some(ip) = spec.get("clusterIP").and_then(Value::as_str)
            && !ip.is_empty()
            && ip != "None"
            && ip.parse::<IpAddr>().is_err()
        {
            self.err(
                &spec_path.field("clusterIP"),
                format!("{ip:?} must be \"None\" or a valid IP address"),
            );
        }
        let ports_path = spec_path.field("ports");
        match spec.get_mut("ports").and_then(Value::as_array_mut) {
            Some(ports) if !ports.is_empty() => {
                for (i, p) in ports.iter_mut().enumerate() {
                    let at = ports_path.index(i);
                    let Some(p) = p.as_object_mut() else { continue };
                    self.port(p, "port", &at, true);
                    self.protocol(p, &at);
                    if let Some(port) = p
                        .get("port")
                        .filter(|v| v.as_i64().is_some_and(|n| (1..=65535).contains(&n)))
                    {
                        let port = port.clone();
                        p.entry("targetPort").or_insert(port);
                    }
                    match p.get("targetPort") {
                        Some(Value::String(name)) => {
                            let ok = name.len() <= 15
                                && IANA_SVC_NAME.is_match(name)
                                && !name.contains("--")
                                && name.chars().any(|c| c.is_ascii_lowercase());
                            if !ok {
                                let msg = format!(
                                    "{name:?} must be a port number or an IANA service name (at most 15 lower case alphanumeric characters or '-', with at least one letter)"
                                );
                                self.err(&at.field("targetPort"), msg);
                            }
                        }
                        Some(_) => self.port(p, "targetPort", &at, false),
                        None => {}
                    }
                    if p.get("nodePort").and_then(Value::as_i64) != Some(0) {
                        self.port(p, "nodePort", &at, false);
                    }
                }
                let ports = ports.clone();
                self.port_names(&ports, &ports_path, true);
            }
            _ if headless || ty == "ExternalName" => {}
            _ => self.err(
                &ports_path,
                "required value is missing: a Service needs at least one port",
            ),
        }
    }

    fn endpoint_slice(&mut self, v: &mut Value) {
        let Some(obj) = v.as_object_mut() else { return };
        let root = FieldPath::default();
        let address_type = obj
            .get("addressType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !matches!(address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
            let msg = if address_type.is_empty() {
                "required value is missing: one of \"IPv4\", \"IPv6\", \"FQDN\"".to_string()
            } else {
                format!(
                    "unsupported value {address_type:?}: supported values: \"IPv4\", \"IPv6\", \"FQDN\""
                )
            };
            self.err(&root.field("addressType"), msg);
        }
        if let Some(endpoints) = obj.get("endpoints").and_then(Value::as_array) {
            for (i, ep) in endpoints.iter().enumerate() {
                let at = root.field("endpoints").index(i).field("addresses");
                let addrs = ep
                    .get("addresses")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if addrs.is_empty() || addrs.len() > 100 {
                    self.err(
                        &at,
                        format!("must have between 1 and 100 addresses, has {}", addrs.len()),
                    );
                }
                for (j, a) in addrs.iter().enumerate() {
                    let s = a.as_str().unwrap_or_default();
                    let ok = match address_type.as_str() {
                        "IPv4" => s.parse::<Ipv4Addr>().is_ok(),
                        "IPv6" => s.parse::<Ipv6Addr>().is_ok(),
                        "FQDN" => dns_subdomain(s).is_none(),
                        _ => true,
                    };
                    if !ok {
                        self.err(
                            &at.index(j),
                            format!("{} is not a valid {address_type} address", show(a)),
                        );
                    }
                }
            }
        }
        if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                let at = root.field("ports").index(i);
                if let Some(p) = p.as_object_mut() {
                    self.port(p, "port", &at, false);
                    self.protocol(p, &at);
                }
            }
            let ports = ports.clone();
            self.port_names(&ports, &root.field("ports"), false);
        }
    }

    fn keys(&mut self, map: Option<&Map<String, Value>>, path: &FieldPath) {
        for k in map.into_iter().flat_map(|m| m.keys()) {
            if k.len() > 253 || !CONFIG_KEY.is_match(k) {
                self.err(
                    &path.key(k),
                    format!("{k:?} is not a valid key: alphanumeric characters, '-', '_' or '.'"),
                );
            }
        }
    }

    fn base64_values(&mut self, map: Option<&Map<String, Value>>, path: &FieldPath) {
        for (k, v) in map.into_iter().flatten() {
            match v.as_str() {
                Some(s) => {
                    if let Err(e) = base64::engine::general_purpose::STANDARD.decode(s) {
                        self.err(
                            &path.key(k),
                            format!("must be base64-encoded ({e}); use stringData for plain text"),
                        );
                    }
                }
                None => self.err(
                    &path.key(k),
                    format!("must be a base64-encoded string, got {}", show(v)),
                ),
            }
        }
    }

    fn secret(&mut self, v: &mut Value) {
        let Some(obj) = v.as_object_mut() else { return };
        let root = FieldPath::default();
        self.keys(
            obj.get("data").and_then(Value::as_object),
            &root.field("data"),
        );
        self.keys(
            obj.get("stringData").and_then(Value::as_object),
            &root.field("stringData"),
        );
        self.base64_values(
            obj.get("data").and_then(Value::as_object),
            &root.field("data"),
        );
        // The API server merges write-only stringData into data.
        if let Some(Value::Object(string_data)) = obj.remove("stringData") {
            let data = obj
                .entry("data")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(data) = data.as_object_mut() {
                for (k, s) in string_data {
                    match s.as_str() {
                        Some(s) => {
                            data.insert(
                                k,
                                Value::from(base64::engine::general_purpose::STANDARD.encode(s)),
                            );
                        }
                        None => self.err(
                            &root.field("stringData").key(&k),
                            format!("must be a string, got {}", show(&s)),
                        ),
                    }
                }
            }
        }
        let ty = obj
            .entry("type")
            .or_insert_with(|| Value::from("Opaque"))
            .as_str()
            .unwrap_or_default()
            .to_string();
        if ty == "kubernetes.io/tls" {
            for key in ["tls.crt", "tls.key"] {
                if obj.get("data").and_then(|d| d.get(key)).is_none() {
                    self.err(
                        &root.field("data").key(key),
                        "required value is missing for a Secret of type kubernetes.io/tls",
                    );
                }
            }
        }
    }

    fn config_map(&mut self, v: &Value) {
        let root = FieldPath::default();
        let data = v.get("data").and_then(Value::as_object);
        let binary = v.get("binaryData").and_then(Value::as_object);
        self.keys(data, &root.field("data"));
        self.keys(binary, &root.field("binaryData"));
        self.base64_values(binary, &root.field("binaryData"));
        for k in binary.into_iter().flat_map(|b| b.keys()) {
            if data.is_some_and(|d| d.contains_key(k)) {
                self.err(
                    &root.field("binaryData").key(k),
                    format!("duplicate of data[{k}]: a key may be in data or binaryData, not both"),
                );
            }
        }
    }

    /// An Ingress backend: a Service with a port (number or name), or a resource.
    fn ingress_backend(&mut self, b: &Value, path: &FieldPath) {
        match (b.get("service"), b.get("resource")) {
            (Some(svc), None) => match svc.get("port") {
                Some(p) if p.get("number").is_some() == p.get("name").is_some() => self.err(
                    &path.field("service").field("port"),
                    "exactly one of number or name is required",
                ),
                Some(p) => {
                    if let Some(o) = p.as_object().filter(|o| o.contains_key("number")) {
                        self.port(o, "number", &path.field("service").field("port"), true);
                    }
                }
                None => self.err(
                    &path.field("service").field("port"),
                    "required value is missing",
                ),
            },
            (None, Some(_)) => {}
            _ => self.err(path, "exactly one of service or resource is required"),
        }
    }

    /// An Ingress: path types and paths, backends (as the API server checks them).
    fn ingress(&mut self, v: &Value) {
        let root = FieldPath::default().field("spec");
        if let Some(b) = v.pointer("/spec/defaultBackend") {
            self.ingress_backend(b, &root.field("defaultBackend"));
        }
        let rules = v.pointer("/spec/rules").and_then(Value::as_array);
        for (i, r) in rules.into_iter().flatten().enumerate() {
            let rp = root.field("rules").index(i);
            let paths = r.pointer("/http/paths").and_then(Value::as_array);
            for (j, p) in paths.into_iter().flatten().enumerate() {
                let pp = rp.field("http").field("paths").index(j);
                let ty = p.get("pathType").and_then(Value::as_str);
                match ty {
                    Some("Exact" | "Prefix" | "ImplementationSpecific") => {}
                    Some(t) => self.err(
                        &pp.field("pathType"),
                        format!("unsupported value {t:?}: supported values: \"Exact\", \"Prefix\", \"ImplementationSpecific\""),
                    ),
                    None => self.err(&pp.field("pathType"), "required value is missing"),
                }
                let path = p.get("path").and_then(Value::as_str).unwrap_or_default();
                if ty != Some("ImplementationSpecific") && !path.starts_with('/') {
                    self.err(
                        &pp.field("path"),
                        format!("{path:?} must be an absolute path"),
                    );
                }
                match p.get("backend") {
                    Some(b) => self.ingress_backend(b, &pp.field("backend")),
                    None => self.err(&pp.field("backend"), "required value is missing"),
                }
            }
        }
    }
}

/// Default and validate a built-in object (metadata aside).
pub(crate) fn check(kind: Kind, value: &mut Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut c = Checker {
        errors: &mut errors,
    };
    match kind {
        Kind::Service => c.service(value),
        Kind::EndpointSlice => c.endpoint_slice(value),
        Kind::Secret => c.secret(value),
        Kind::ConfigMap => c.config_map(value),
        Kind::Ingress => c.ingress(value),
        _ => {}
    }
    errors
}

/// Fields of a built-in object (metadata included) that its Kubernetes type
/// does not have, as the API server's strict decoding finds them.
pub(crate) fn unknown_fields(kind: Kind, value: &Value) -> Vec<FieldError> {
    fn scan<T: serde::de::DeserializeOwned>(value: &Value) -> Vec<FieldError> {
        let mut found = Vec::new();
        // A type error is reported by the typed decoding afterwards.
        let _ = serde_ignored::deserialize::<_, _, T>(value, |p| found.push(field_path(&p)));
        found
            .into_iter()
            .map(|path| FieldError::new(&path, "unknown field"))
            .collect()
    }
    match kind {
        Kind::Service => scan::<types::Service>(value),
        Kind::EndpointSlice => scan::<types::EndpointSlice>(value),
        Kind::Secret => scan::<types::Secret>(value),
        Kind::ConfigMap => scan::<types::ConfigMap>(value),
        Kind::Namespace => scan::<types::Namespace>(value),
        Kind::Ingress => scan::<types::Ingress>(value),
        Kind::IngressClass => scan::<types::IngressClass>(value),
        _ => Vec::new(),
    }
}

/// A serde_ignored path as a field path.
fn field_path(p: &serde_ignored::Path<'_>) -> FieldPath {
    use serde_ignored::Path;
    match p {
        Path::Root => FieldPath::default(),
        Path::Seq { parent, index } => field_path(parent).index(*index),
        Path::Map { parent, key } => field_path(parent).field(key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Which name format a kind's `metadata.name` must have.
pub(crate) fn name_error(kind: Kind, name: &str) -> Option<String> {
    match kind {
        Kind::Service => dns_1035_label(name),
        Kind::Namespace => dns_label(name),
        _ => dns_subdomain(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errs(kind: Kind, v: &mut Value) -> Vec<String> {
        check(kind, v)
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    #[test]
    fn names() {
        assert!(dns_subdomain("a.b-c").is_none());
        assert!(dns_subdomain("A").is_some());
        assert!(dns_label("a.b").is_some());
        assert!(dns_1035_label("1abc").is_some());
        assert!(dns_label("1abc").is_none());
        assert!(qualified_name("example.com/app").is_none());
        assert!(qualified_name("app_name").is_none());
        assert!(qualified_name("Bad Key").is_some());
        assert!(qualified_name("/x").is_some());
        assert!(label_value("").is_none());
        assert!(label_value("-x").is_some());
    }

    #[test]
    fn service_defaults_and_ports() {
        let mut v = json!({"spec": {"ports": [{"port": 80}]}});
        assert!(errs(Kind::Service, &mut v).is_empty());
        assert_eq!(v["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(v["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(v["spec"]["type"], "ClusterIP");

        let mut v = json!({"spec": {"ports": [{"port": 0, "name": "a"}, {"port": 70000, "protocol": "HTTP", "targetPort": "Bad"}]}});
        assert_eq!(
            errs(Kind::Service, &mut v),
            [
                "spec.ports[0].port: must be a port number between 1 and 65535, is 0",
                "spec.ports[1].port: must be a port number between 1 and 65535, is 70000",
                "spec.ports[1].protocol: unsupported value \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
                "spec.ports[1].targetPort: \"Bad\" must be a port number or an IANA service name (at most 15 lower case alphanumeric characters or '-', with at least one letter)",
                "spec.ports[1].name: required value is missing: every port must be named when there are several",
            ]
        );
        let mut v = json!({"spec": {}});
        assert_eq!(
            errs(Kind::Service, &mut v),
            ["spec.ports: required value is missing: a Service needs at least one port"]
        );
        let mut v = json!({"spec": {"clusterIP": "None"}});
        assert!(errs(Kind::Service, &mut v).is_empty());
    }

    #[test]
    fn endpoint_slice_addresses() {
        let mut v = json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1", "fe80::1"]}], "ports": [{"port": 8080}]});
        assert_eq!(
            errs(Kind::EndpointSlice, &mut v),
            ["endpoints[0].addresses[1]: \"fe80::1\" is not a valid IPv4 address"]
        );
        assert_eq!(v["ports"][0]["protocol"], "TCP");
        let mut v = json!({"addressType": "IPX", "endpoints": []});
        assert_eq!(
            errs(Kind::EndpointSlice, &mut v),
            [
                "addressType: unsupported value \"IPX\": supported values: \"IPv4\", \"IPv6\", \"FQDN\""
            ]
        );
    }

    #[test]
    fn secret_data_is_base64_and_string_data_merges() {
        let mut v = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "not base64!"}, "stringData": {"tls.key": "k"}});
        let e = errs(Kind::Secret, &mut v);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("data[tls.crt]: must be base64-encoded"),
            "{e:?}"
        );
        assert_eq!(v["data"]["tls.key"], "aw==");
        assert!(v.get("stringData").is_none());
        let mut v = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "YQ=="}});
        assert_eq!(
            errs(Kind::Secret, &mut v),
            ["data[tls.key]: required value is missing for a Secret of type kubernetes.io/tls"]
        );
        let mut v = json!({"data": {"bad key": "YQ=="}});
        assert_eq!(
            errs(Kind::Secret, &mut v),
            [
                "data[bad key]: \"bad key\" is not a valid key: alphanumeric characters, '-', '_' or '.'"
            ]
        );
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn config_map_keys() {
        let mut v = json!({"data": {"a": "x"}, "binaryData": {"a": "YQ=="}});
        assert_eq!(
            errs(Kind::ConfigMap, &mut v),
            ["binaryData[a]: duplicate of data[a]: a key may be in data or binaryData, not both"]
        );
    }
}
