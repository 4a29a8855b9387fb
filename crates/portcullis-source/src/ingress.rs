//! Ingresses served directly: the Gateway API objects derived from the
//! snapshot's Ingresses of Portcullis' IngressClasses
//! ([`portcullis_import::serve`], the converter of `portcullis import
//! ingress`), defaulted, validated and decoded exactly as if they had been
//! read from a file, and added to a copy of the snapshot. Pure: no I/O.
//!
//! Objects the user wrote win: a derived object whose kind and
//! `namespace/name` a user object already has is not added, and the
//! Ingresses it comes from say so.

use std::collections::BTreeMap;
use std::path::Path;

use portcullis_import::input::{Found, Inputs};
use portcullis_import::report::{IngressReport, Outcome as Support};
use portcullis_store::status::Statuses;
use portcullis_store::{Kind, ObjectKey, ObjectRef, Snapshot};

pub use portcullis_import::serve::{
    CLASS_LABEL, FROM_ANNOTATION, GATEWAY_CLASS, INGRESS_CONTROLLER, ServeOptions, derived_class,
};

use crate::FieldValidation;
use crate::object::{Outcome, process_doc};
use crate::yaml::{Doc, Lines};

/// One Ingress Portcullis serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServedIngress {
    /// Its IngressClass.
    pub class: String,
    /// How each annotation fared, and the converter's notes.
    pub report: IngressReport,
    /// Derived objects that could not be added (invalid, or a user object
    /// has the same kind and name), one sentence each.
    pub problems: Vec<String>,
    /// The derived objects serving it.
    pub objects: Vec<ObjectRef>,
}

/// The snapshot with the derived objects, and what was done per Ingress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Derived {
    /// The input snapshot plus the derived objects.
    pub snapshot: Snapshot,
    /// Every Ingress served, by key.
    pub ingresses: BTreeMap<ObjectKey, ServedIngress>,
}

impl Derived {
    /// The Ingress a derived object comes from first (for locating problems).
    pub fn origin(&self, oref: &ObjectRef) -> Option<&ObjectKey> {
        self.ingresses
            .iter()
            .find(|(_, s)| s.objects.contains(oref))
            .map(|(k, _)| k)
    }
}

/// Add the objects serving the snapshot's Portcullis Ingresses.
pub fn derive(snapshot: &Snapshot, options: &ServeOptions) -> Derived {
    derive_reusing(snapshot, options, &Snapshot::default())
}

/// [`derive`], keeping the `Arc` of every derived object equal to the one
/// `previous` holds (the last derived snapshot), so translation's memo
/// reuses its work for Ingresses that did not change.
pub fn derive_reusing(snapshot: &Snapshot, options: &ServeOptions, previous: &Snapshot) -> Derived {
    derive_owned(snapshot.clone(), options, previous)
}

/// [`derive_reusing`], taking the snapshot: without Ingresses it is handed
/// back as it is (no copy of its maps).
pub fn derive_owned(snapshot: Snapshot, options: &ServeOptions, previous: &Snapshot) -> Derived {
    let mut out = Derived {
        snapshot,
        ingresses: BTreeMap::new(),
    };
    if out.snapshot.ingresses.is_empty() {
        return out;
    }
    let snapshot = &out.snapshot.clone();
    let key = |k: &ObjectKey| format!("{}/{}", k.namespace, k.name);
    let inputs = Inputs {
        ingresses: snapshot
            .ingresses
            .iter()
            .map(|(k, i)| Found {
                ingress: (**i).clone(),
                file: format!("Ingress {k}"),
            })
            .collect(),
        classes: snapshot
            .ingress_classes
            .iter()
            .map(|(k, c)| (k.name.clone(), (**c).clone()))
            .collect(),
        services: snapshot
            .services
            .iter()
            .map(|(k, s)| (key(k), (**s).clone()))
            .collect(),
        secrets: snapshot
            .secrets
            .iter()
            .map(|(k, s)| (key(k), (**s).clone()))
            .collect(),
        skipped: BTreeMap::new(),
    };
    let served = portcullis_import::serve::serve(&inputs, options);
    for (k, report) in served.ingresses {
        let (ns, name) = k.split_once('/').unwrap_or(("", &k));
        let class = served.classes.get(&k).cloned().unwrap_or_default();
        out.ingresses.insert(
            ObjectKey::new(ns, name),
            ServedIngress {
                class,
                report,
                ..ServedIngress::default()
            },
        );
    }
    let mut warnings = Vec::new();
    for o in served.objects {
        let origins: Vec<ObjectKey> = o
            .from
            .iter()
            .filter_map(|f| f.strip_prefix("Ingress "))
            .map(|k| {
                let (ns, n) = k.split_once('/').unwrap_or(("", k));
                ObjectKey::new(ns, n)
            })
            .collect();
        let label = o.from.join(", ");
        // A derived object's version is its content: equal content, equal
        // version, so translation reuses its work for unchanged Ingresses.
        let version = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            o.value.to_string().hash(&mut h);
            format!("derived-{:016x}", h.finish())
        };
        let doc = Doc {
            value: o.value,
            lines: Lines::flat(0),
        };
        let file = Path::new(&label);
        let mut problem = None;
        let mut added = None;
        for p in process_doc(
            file,
            doc,
            0,
            &|_, _| None,
            FieldValidation::Strict,
            &mut warnings,
        ) {
            match p.outcome {
                Outcome::Valid {
                    kind, key, object, ..
                } => {
                    if out.snapshot.get(kind, &key).is_some() {
                        problem = Some(format!(
                            "{kind} {key} is not derived: an object of that kind and name is in the configuration"
                        ));
                        continue;
                    }
                    let mut object = *object;
                    let meta = object.meta_mut();
                    meta.generation = Some(1);
                    meta.uid = Some(format!("derived:{kind}:{key}"));
                    meta.resource_version = Some(version.clone());
                    out.snapshot.insert(object);
                    out.snapshot.share_equal(previous, kind, &key);
                    added = Some(ObjectRef { kind, key });
                }
                Outcome::Invalid { kind, key, errors } => {
                    let what = match (kind, key) {
                        (Some(k), Some(n)) => format!("{k} {n}"),
                        _ => "an object".into(),
                    };
                    let why: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
                    problem = Some(format!("the derived {what} is invalid: {}", why.join("; ")));
                }
                Outcome::Skipped => {}
            }
        }
        for origin in &origins {
            if let Some(s) = out.ingresses.get_mut(origin) {
                s.problems.extend(problem.clone());
                s.objects.extend(added.clone());
            }
        }
        // Gateways come from a class: every Ingress of it is served by them.
        if origins.is_empty()
            && let Some(added) = &added
            && added.kind == Kind::Gateway
        {
            for s in out.ingresses.values_mut() {
                if s.class == added.key.name {
                    s.objects.push(added.clone());
                }
            }
        }
    }
    out
}

/// Everything not honoured for one served Ingress, one sentence each: its
/// annotations that are `unsupported` (and unknown `nginx.ingress.kubernetes.io/`
/// ones), the converter's notes, derived objects not added, and problems of
/// the derived routes and policies (`statuses`: translation's). Standalone
/// mode puts them in the Ingress's `PartiallyInvalid` condition, Kubernetes
/// mode in a Warning event.
pub fn not_honoured(served: &ServedIngress, statuses: &Statuses) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for e in &served.report.entries {
        let nginx = e.annotation.starts_with("nginx.ingress.kubernetes.io/");
        if e.outcome == Support::Unsupported || (e.outcome == Support::Unknown && nginx) {
            let why = if e.difference.is_empty() {
                &e.result
            } else {
                &e.difference
            };
            out.push(format!(
                "annotation {} is not honoured: {why}",
                e.annotation
            ));
        }
    }
    out.extend(served.report.notes.iter().cloned());
    out.extend(served.problems.iter().cloned());
    for o in &served.objects {
        if let Some(s) = statuses.get(o) {
            for c in s.conditions().into_iter().flatten() {
                let bad = match c.type_.as_str() {
                    "Accepted" | "ResolvedRefs" => c.status == "False",
                    "PartiallyInvalid" => c.is_true(),
                    _ => false,
                };
                if bad && o.kind != Kind::Gateway {
                    out.push(format!("{o}: {} ({}): {}", c.type_, c.reason, c.message));
                }
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn ingresses_of_our_class_are_served_by_valid_derived_objects() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("a.yaml")).unwrap();
        write!(
            f,
            "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: public}}
spec: {{controller: {INGRESS_CONTROLLER}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations: {{nginx.ingress.kubernetes.io/server-snippet: 'deny all;'}}
spec:
  ingressClassName: public
  rules:
    - host: a.example.com
      http:
        paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: theirs}}
spec:
  ingressClassName: nginx
  defaultBackend: {{service: {{name: web, port: {{number: 80}}}}}}
"
        )
        .unwrap();
        let loaded = crate::load_path(dir.path());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut snap = Snapshot::default();
        for o in loaded.objects {
            snap.insert(o.object);
        }
        let d = derive(
            &snap,
            &ServeOptions {
                http: "127.0.0.1:8080".parse().unwrap(),
                https: "127.0.0.1:8443".parse().unwrap(),
                provisioned_in: None,
            },
        );
        let k = ObjectKey::new("default", "web");
        assert_eq!(
            d.ingresses.keys().collect::<Vec<_>>(),
            [&k],
            "only the Ingress of our class"
        );
        let s = &d.ingresses[&k];
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.class, "public");
        let gw = &d.snapshot.gateways[&ObjectKey::new("default", "public")];
        assert_eq!(gw.spec.listeners[0].port, 8080);
        let route = ObjectRef {
            kind: Kind::HTTPRoute,
            key: ObjectKey::new("default", "web-a-example-com"),
        };
        assert!(s.objects.contains(&route), "{:?}", s.objects);
        assert_eq!(d.origin(&route), Some(&k));
        assert!(
            d.snapshot
                .gateway_classes
                .contains_key(&ObjectKey::cluster(GATEWAY_CLASS))
        );
        assert_eq!(
            s.report.entries[0].annotation,
            "nginx.ingress.kubernetes.io/server-snippet"
        );
    }

    #[test]
    fn ingress_unknown_fields_and_bad_paths_are_errors_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("i.yaml"),
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rulez: []
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web2}
spec:
  rules:
    - http:
        paths:
          - {path: x, pathType: Regex, backend: {service: {name: web}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: c}
spec: {controler: x}
",
        )
        .unwrap();
        let loaded = crate::load_path(dir.path());
        let errors: Vec<String> = loaded
            .errors
            .iter()
            .map(|e| {
                let s = e.to_string();
                s[s.find("i.yaml").unwrap()..].to_string()
            })
            .collect();
        assert_eq!(
            errors,
            [
                "i.yaml:5: Ingress default/web: spec.rulez: unknown field",
                "i.yaml:14: Ingress default/web2: spec.rules[0].http.paths[0].pathType: unsupported value \"Regex\": supported values: \"Exact\", \"Prefix\", \"ImplementationSpecific\"",
                "i.yaml:14: Ingress default/web2: spec.rules[0].http.paths[0].path: \"x\" must be an absolute path",
                "i.yaml:14: Ingress default/web2: spec.rules[0].http.paths[0].backend.service.port: required value is missing",
                "i.yaml:19: IngressClass c: spec.controler: unknown field",
            ]
        );
    }

    #[test]
    fn an_object_of_the_configuration_wins_over_a_derived_one_and_the_ingress_says_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations: {kubernetes.io/ingress.class: portcullis}
spec:
  rules:
    - host: a.example.com
      http:
        paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-a-example-com}
spec:
  rules: [{backendRefs: [{name: other, port: 80}]}]
",
        )
        .unwrap();
        let loaded = crate::load_path(dir.path());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut snap = Snapshot::default();
        for o in loaded.objects {
            snap.insert(o.object);
        }
        let before = snap.http_routes.values().next().unwrap().clone();
        let d = derive(
            &snap,
            &ServeOptions {
                http: "127.0.0.1:8080".parse().unwrap(),
                https: "127.0.0.1:8443".parse().unwrap(),
                provisioned_in: None,
            },
        );
        let s = &d.ingresses[&ObjectKey::new("default", "web")];
        assert_eq!(s.class, "portcullis", "the legacy annotation");
        assert_eq!(
            s.problems,
            [
                "HTTPRoute default/web-a-example-com is not derived: an object of that kind and name is in the configuration"
            ]
        );
        let after = &d.snapshot.http_routes[&ObjectKey::new("default", "web-a-example-com")];
        assert!(std::sync::Arc::ptr_eq(&before, after));
    }

    #[test]
    fn unchanged_derived_objects_keep_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations: {kubernetes.io/ingress.class: portcullis}
spec:
  rules:
    - host: a.example.com
      http:
        paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
",
        )
        .unwrap();
        let mut snap = Snapshot::default();
        for o in crate::load_path(dir.path()).objects {
            snap.insert(o.object);
        }
        let opts = ServeOptions {
            http: "127.0.0.1:8080".parse().unwrap(),
            https: "127.0.0.1:8443".parse().unwrap(),
            provisioned_in: None,
        };
        let first = derive(&snap, &opts).snapshot;
        let second = derive_reusing(&snap, &opts, &first).snapshot;
        let k = ObjectKey::new("default", "web-a-example-com");
        assert!(std::sync::Arc::ptr_eq(
            &first.http_routes[&k],
            &second.http_routes[&k]
        ));
        let third = derive(&snap, &opts).snapshot;
        assert!(!std::sync::Arc::ptr_eq(
            &first.http_routes[&k],
            &third.http_routes[&k]
        ));
    }
}
