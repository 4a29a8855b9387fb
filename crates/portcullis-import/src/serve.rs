//! Serving Ingresses directly: which Ingresses are Portcullis', and the
//! Gateway API objects that serve them.
//!
//! The objects are the converter's own output ([`crate::convert`]), with two
//! changes only: each Gateway is bound to the ingress address (`spec.addresses`
//! and the ports of `--ingress-http`/`--ingress-https`) and labelled with its
//! IngressClass ([`CLASS_LABEL`]), and every object names the Ingresses it
//! comes from in the annotation [`FROM_ANNOTATION`]. So an Ingress served
//! directly and its `portcullis import ingress` output behave the same.
//!
//! An Ingress is Portcullis' when
//! - its `spec.ingressClassName` names an IngressClass whose `spec.controller`
//!   is [`INGRESS_CONTROLLER`];
//! - else its legacy annotation `kubernetes.io/ingress.class` is
//!   [`LEGACY_CLASS`] or names such an IngressClass;
//! - else (no class at all) the default IngressClass (annotation
//!   `ingressclass.kubernetes.io/is-default-class: "true"`; the first by name
//!   when several are marked) is such an IngressClass.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};

use crate::input::Inputs;
use crate::output::Object;
use crate::report::IngressReport;
use crate::{Options, convert};

/// `spec.controller` of the IngressClasses Portcullis serves.
pub const INGRESS_CONTROLLER: &str = "portcullis.dev/ingress-controller";
/// The value of the legacy `kubernetes.io/ingress.class` annotation that
/// selects Portcullis without an IngressClass object.
pub const LEGACY_CLASS: &str = "portcullis";
/// `gatewayClassName` of the Gateways derived from Ingresses.
pub const GATEWAY_CLASS: &str = "portcullis-ingress";
/// Label on a derived Gateway: the IngressClass it serves.
pub const CLASS_LABEL: &str = "portcullis.dev/ingress-class";
/// Annotation on every derived object: where it comes from
/// (`Ingress ns/name`, `IngressClass name`, comma-separated).
pub const FROM_ANNOTATION: &str = "portcullis.dev/from";

const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Where the derived Gateways listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// HTTP listeners' address and port.
    pub http: SocketAddr,
    /// HTTPS (and TLS passthrough) listeners' address and port; its IP must
    /// be the HTTP one's (a Gateway has one address).
    pub https: SocketAddr,
    /// Kubernetes mode: the namespace of the derived Gateways, which get no
    /// `spec.addresses` (each is given a provisioned proxy, whose Service
    /// gives it its address; only the ports of `http` and `https` are used).
    /// `None` (standalone mode): Gateways in `default`, bound to `http`'s IP.
    pub provisioned_in: Option<String>,
}

/// What serving the Ingresses takes.
#[derive(Clone, Debug, Default)]
pub struct Served {
    /// The derived objects, sorted by kind, namespace and name.
    pub objects: Vec<Object>,
    /// The report of every Ingress served (Portcullis' class), by `namespace/name`.
    pub ingresses: BTreeMap<String, IngressReport>,
    /// The IngressClass of every Ingress served, by `namespace/name`.
    pub classes: BTreeMap<String, String>,
}

fn is_ours(class: &IngressClass) -> bool {
    class
        .spec
        .as_ref()
        .and_then(|s| s.controller.as_deref())
        .is_some_and(|c| c == INGRESS_CONTROLLER)
}

fn is_default(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The IngressClass of `ingress` when it is Portcullis' (see the module
/// docs), `None` when another controller's (or nobody's).
pub fn class_of(ingress: &Ingress, classes: &BTreeMap<String, IngressClass>) -> Option<String> {
    let ours_named = |name: &str| classes.get(name).is_some_and(is_ours);
    if let Some(c) = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return ours_named(c).then(|| c.to_string());
    }
    let legacy = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_ANNOTATION));
    if let Some(c) = legacy {
        return (c == LEGACY_CLASS || ours_named(c)).then(|| c.clone());
    }
    let (name, class) = classes.iter().find(|(_, c)| is_default(c))?;
    is_ours(class).then(|| name.clone())
}

/// The objects serving the Ingresses of `inputs` that are Portcullis' (the
/// others are left alone), bound to `options`' addresses.
pub fn serve(inputs: &Inputs, options: &ServeOptions) -> Served {
    let mut ours = Inputs {
        services: inputs.services.clone(),
        secrets: inputs.secrets.clone(),
        ..Inputs::default()
    };
    let mut classes = BTreeMap::new();
    for f in &inputs.ingresses {
        if let Some(c) = class_of(&f.ingress, &inputs.classes) {
            classes.insert(f.key(), c);
            ours.ingresses.push(f.clone());
        }
    }
    if ours.ingresses.is_empty() {
        return Served::default();
    }
    ours.classes = inputs
        .classes
        .iter()
        .filter(|(_, c)| is_ours(c))
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    let opts = Options {
        gateway_class: GATEWAY_CLASS.into(),
        http_port: options.http.port(),
        https_port: options.https.port(),
        gateway_namespace: options.provisioned_in.clone(),
        ..Options::default()
    };
    let conversion = convert::run(&ours, &opts);
    let mut objects = conversion.objects;
    for o in &mut objects {
        bind(o, options);
    }
    Served {
        objects,
        ingresses: conversion
            .report
            .ingresses
            .into_iter()
            .map(|r| (r.ingress.clone(), r))
            .collect(),
        classes,
    }
}

/// Annotate an object with its origin; bind a Gateway to the ingress address.
fn bind(o: &mut Object, options: &ServeOptions) {
    let from = o.from.join(", ");
    let class = o
        .from
        .iter()
        .find_map(|f| f.strip_prefix("IngressClass "))
        .map(str::to_string);
    let is_gateway = o.kind() == "Gateway";
    let meta = &mut o.value["metadata"];
    meta["annotations"][FROM_ANNOTATION] = json!(from);
    if is_gateway {
        if let Some(c) = class {
            meta["labels"][CLASS_LABEL] = json!(c);
        }
        if options.provisioned_in.is_none() {
            o.value["spec"]["addresses"] =
                json!([{"type": "IPAddress", "value": options.http.ip().to_string()}]);
        }
    }
}

/// The IngressClass label of a derived Gateway's labels, if it is one.
pub fn derived_class(labels: Option<&BTreeMap<String, String>>) -> Option<&str> {
    labels.and_then(|l| l.get(CLASS_LABEL)).map(String::as_str)
}

/// Whether a JSON object (its `metadata`) was derived from Ingresses.
pub fn is_derived(value: &Value) -> bool {
    value["metadata"]["annotations"][FROM_ANNOTATION].is_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Found;

    fn class(name: &str, controller: &str, default: bool) -> (String, IngressClass) {
        let mut v = json!({"metadata": {"name": name}, "spec": {"controller": controller}});
        if default {
            v["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: "true"});
        }
        (name.into(), serde_json::from_value(v).unwrap())
    }

    fn ingress(class: Option<&str>, legacy: Option<&str>) -> Ingress {
        let mut v = json!({"metadata": {"name": "i", "namespace": "default"}, "spec": {
            "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
        if let Some(c) = class {
            v["spec"]["ingressClassName"] = json!(c);
        }
        if let Some(c) = legacy {
            v["metadata"]["annotations"] = json!({LEGACY_ANNOTATION: c});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn class_rules() {
        let classes: BTreeMap<_, _> = [
            class("public", INGRESS_CONTROLLER, false),
            class("nginx", "k8s.io/ingress-nginx", true),
        ]
        .into();
        assert_eq!(
            class_of(&ingress(Some("public"), None), &classes).as_deref(),
            Some("public")
        );
        assert_eq!(class_of(&ingress(Some("nginx"), None), &classes), None);
        assert_eq!(class_of(&ingress(Some("missing"), None), &classes), None);
        // No class: the default class is ingress-nginx's.
        assert_eq!(class_of(&ingress(None, None), &classes), None);
        assert_eq!(
            class_of(&ingress(None, Some("portcullis")), &classes).as_deref(),
            Some("portcullis")
        );
        assert_eq!(
            class_of(&ingress(None, Some("public")), &classes).as_deref(),
            Some("public")
        );
        assert_eq!(class_of(&ingress(None, Some("nginx")), &classes), None);
        let classes: BTreeMap<_, _> = [class("ours", INGRESS_CONTROLLER, true)].into();
        assert_eq!(
            class_of(&ingress(None, None), &classes).as_deref(),
            Some("ours")
        );
    }

    #[test]
    fn gateways_are_bound_and_objects_say_where_they_come_from() {
        let inputs = Inputs {
            ingresses: vec![
                Found {
                    ingress: ingress(None, Some("portcullis")),
                    file: "a.yaml".into(),
                },
                Found {
                    ingress: {
                        let mut i = ingress(Some("nginx"), None);
                        i.metadata.name = Some("other".into());
                        i
                    },
                    file: "a.yaml".into(),
                },
            ],
            ..Inputs::default()
        };
        let served = serve(
            &inputs,
            &ServeOptions {
                http: "127.0.0.1:8080".parse().unwrap(),
                https: "127.0.0.1:8443".parse().unwrap(),
                provisioned_in: None,
            },
        );
        assert_eq!(served.ingresses.keys().collect::<Vec<_>>(), ["default/i"]);
        let gw = served
            .objects
            .iter()
            .find(|o| o.kind() == "Gateway")
            .unwrap();
        assert_eq!(gw.value["metadata"]["name"], "portcullis");
        assert_eq!(gw.value["spec"]["gatewayClassName"], GATEWAY_CLASS);
        assert_eq!(gw.value["spec"]["addresses"][0]["value"], "127.0.0.1");
        assert_eq!(gw.value["spec"]["listeners"][0]["port"], 8080);
        assert_eq!(gw.value["metadata"]["labels"][CLASS_LABEL], "portcullis");
        assert!(served.objects.iter().all(|o| is_derived(&o.value)));
        let route = served
            .objects
            .iter()
            .find(|o| o.kind() == "HTTPRoute")
            .unwrap();
        assert_eq!(
            route.value["metadata"]["annotations"][FROM_ANNOTATION],
            "Ingress default/i"
        );
    }
}
