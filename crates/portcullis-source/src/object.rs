//! From one parsed document to typed objects: kind and version resolution,
//! `List` expansion, metadata checks, defaulting and validation, decoding.

use std::path::Path;

use portcullis_store::{Kind, Object, ObjectKey, types};
use serde_json::{Map, Value};

use crate::builtin;
use crate::crd;
use crate::schema::{self, FieldError, Validator};
use crate::yaml::{Doc, FieldPath, Lines, Seg};
use crate::{FieldValidation, SourceError};

/// Where a document (or an item of a `List` document) is in its file.
pub(crate) type Position = (usize, Option<usize>);

/// What became of one object of a file.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Defaulted, validated and decoded.
    Valid {
        /// Its kind.
        kind: Kind,
        /// Its namespace and name.
        key: ObjectKey,
        /// The typed object (metadata bookkeeping not done yet).
        object: Box<Object>,
        /// The defaulted JSON it was decoded from.
        json: Value,
    },
    /// Rejected; whatever could be told about its identity is kept.
    Invalid {
        /// Its kind, if known.
        kind: Option<Kind>,
        /// Its key, if known.
        key: Option<ObjectKey>,
        /// Why it was rejected (at least one).
        errors: Vec<SourceError>,
    },
    /// Not a kind Portcullis reads (a warning was issued).
    Skipped,
}

/// One object of a file, processed.
#[derive(Clone, Debug)]
pub(crate) struct Processed {
    /// The line the object starts at.
    pub(crate) line: usize,
    /// Its position in the file.
    pub(crate) position: Position,
    /// The result.
    pub(crate) outcome: Outcome,
}

/// The previous good JSON of an object, for transition rules.
pub(crate) type OldLookup<'a> = &'a dyn Fn(Kind, &ObjectKey) -> Option<Value>;

struct Ctx<'a> {
    file: &'a Path,
    lines: &'a Lines,
    kind_name: Option<String>,
    key: Option<ObjectKey>,
}

impl Ctx<'_> {
    fn error(&self, path: &FieldPath, message: impl Into<String>) -> SourceError {
        SourceError {
            file: self.file.to_path_buf(),
            line: self.lines.lookup(path),
            kind: self.kind_name.clone(),
            object: self.key.clone(),
            field: if path.0.is_empty() {
                None
            } else {
                Some(path.to_string())
            },
            message: message.into(),
        }
    }
    /// Errors (or warnings) about fields, in the order of their lines.
    fn errors(&self, errs: Vec<FieldError>) -> Vec<SourceError> {
        let mut out: Vec<SourceError> = errs
            .into_iter()
            .map(|e| self.error(&e.path, e.message))
            .collect();
        out.sort_by_key(|e| e.line);
        out
    }
}

/// Process one document: a single object or a `List` of them.
pub(crate) fn process_doc(
    file: &Path,
    doc: Doc,
    index: usize,
    old: OldLookup,
    fields: FieldValidation,
    warnings: &mut Vec<String>,
) -> Vec<Processed> {
    let is_list = doc
        .value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && doc.value.get("items").is_some_and(Value::is_array);
    if !is_list {
        return vec![process_object(
            file,
            doc.value,
            &doc.lines,
            (index, None),
            old,
            fields,
            warnings,
        )];
    }
    let Value::Object(mut list) = doc.value else {
        unreachable!("a List is an object")
    };
    let items = match list.remove("items") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let items_lines = doc
        .lines
        .child(&Seg::Field("items".into()))
        .cloned()
        .unwrap_or_default();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let lines = items_lines
                .child(&Seg::Index(i))
                .cloned()
                .unwrap_or_else(|| Lines::flat(items_lines.line));
            process_object(file, item, &lines, (index, Some(i)), old, fields, warnings)
        })
        .collect()
}

fn invalid(ctx: &Ctx, kind: Option<Kind>, errors: Vec<SourceError>) -> Outcome {
    Outcome::Invalid {
        kind,
        key: ctx.key.clone(),
        errors,
    }
}

fn process_object(
    file: &Path,
    value: Value,
    lines: &Lines,
    position: Position,
    old: OldLookup,
    fields: FieldValidation,
    warnings: &mut Vec<String>,
) -> Processed {
    let mut ctx = Ctx {
        file,
        lines,
        kind_name: None,
        key: None,
    };
    let outcome = build(&mut ctx, value, old, fields, warnings);
    Processed {
        line: lines.line,
        position,
        outcome,
    }
}

fn build(
    ctx: &mut Ctx,
    value: Value,
    old: OldLookup,
    fields: FieldValidation,
    warnings: &mut Vec<String>,
) -> Outcome {
    let root = FieldPath::default();
    let Value::Object(mut obj) = value else {
        return invalid(
            ctx,
            None,
            vec![ctx.error(
                &root,
                format!("a document must be an object, got {}", schema::show(&value)),
            )],
        );
    };
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind_name = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if api_version.is_empty() || kind_name.is_empty() {
        let field = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        return invalid(
            ctx,
            None,
            vec![ctx.error(&root.field(field), "required value is missing")],
        );
    }
    ctx.kind_name = Some(kind_name.clone());
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let meta_name = |f: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let Some(kind) = Kind::parse(group, &kind_name) else {
        let who = match (meta_name("namespace"), meta_name("name")) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n,
            _ => "(unnamed)".into(),
        };
        match fields {
            FieldValidation::Strict => {
                ctx.key = meta_name("name")
                    .map(|n| ObjectKey::new(meta_name("namespace").unwrap_or_default(), n));
                let msg = format!(
                    "no matches for kind {kind_name:?} in version {api_version:?}: Portcullis reads \
                     the Gateway API kinds ({}), v1 Service, EndpointSlice, Secret, ConfigMap and \
                     Namespace, and networking.k8s.io/v1 Ingress and IngressClass; remove this object from the configuration (or skip unknown kinds with \
                     field validation Warn)",
                    portcullis_store::GATEWAY_GROUP
                );
                return invalid(ctx, None, vec![ctx.error(&root.field("kind"), msg)]);
            }
            FieldValidation::Warn => warnings.push(format!(
                "{}:{}: skipping unsupported kind {api_version} {kind_name} {who}",
                ctx.file.display(),
                ctx.lines.line
            )),
            FieldValidation::Ignore => {}
        }
        return Outcome::Skipped;
    };
    // The best identity we can tell, for errors before metadata is checked.
    ctx.key = meta_name("name").map(|n| {
        let ns = meta_name("namespace").unwrap_or_else(|| "default".into());
        ObjectKey::new(if kind.namespaced() { ns } else { String::new() }, n)
    });

    let crd = crd::crd(kind);
    let not_served = |served: &str| {
        let group = if group.is_empty() {
            "the core group"
        } else {
            group
        };
        let msg = format!(
            "no matches for kind {kind_name:?} in version {api_version:?}: served versions of {group}: {served}"
        );
        invalid(
            ctx,
            Some(kind),
            vec![ctx.error(&root.field("apiVersion"), msg)],
        )
    };
    // The schema of the version; built-in kinds have none, and only v1
    // (core/v1, discovery.k8s.io/v1) of them is read.
    let schema = match crd {
        Some(c) => match c.served(version) {
            Some(v) => Some(&v.schema),
            None => return not_served(&c.served_names().join(", ")),
        },
        None if version == "v1" => None,
        None => return not_served("v1"),
    };

    // metadata
    let mut errors = Vec::new();
    let mut meta = match obj.remove("metadata") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            let msg = format!("must be an object, got {}", schema::show(&other));
            return invalid(
                ctx,
                Some(kind),
                vec![ctx.error(&root.field("metadata"), msg)],
            );
        }
        None => Map::new(),
    };
    let mut meta_warnings = Vec::new();
    let mut unknown = Vec::new();
    let key = check_metadata(
        kind,
        &mut meta,
        &mut errors,
        &mut meta_warnings,
        &mut unknown,
    );
    if let Some(k) = &key {
        ctx.key = Some(k.clone());
    }
    warnings.extend(ctx.errors(meta_warnings).into_iter().map(|e| e.to_string()));
    if !errors.is_empty() {
        return invalid(ctx, Some(kind), ctx.errors(errors));
    }
    let key = key.unwrap_or_default();

    // spec and friends
    let mut json = Value::Object(obj);
    match schema {
        Some(schema) => {
            if crd.is_some_and(|c| c.status_subresource)
                && let Some(o) = json.as_object_mut()
            {
                o.remove("status");
            }
            schema::prune_and_default(&mut json, schema, &root, &mut unknown);
            let old_json = old(kind, &key);
            let mut v = Validator::default();
            v.validate(&json, schema, &root, old_json.as_ref());
            errors = v.errors;
        }
        None => {
            errors = builtin::check(kind, &mut json);
            if errors.is_empty() {
                let mut with_meta = json.clone();
                if let Some(o) = with_meta.as_object_mut() {
                    o.insert("metadata".into(), Value::Object(meta.clone()));
                }
                unknown.extend(builtin::unknown_fields(kind, &with_meta));
                for u in &unknown {
                    remove_field(&mut json, &u.path);
                }
            }
        }
    }
    // Portcullis' own kinds list only implemented fields: anything else is an
    // error whatever the field validation, never silently dropped.
    let fields = if kind.is_portcullis() {
        unknown = strict_unknown(unknown);
        FieldValidation::Strict
    } else {
        fields
    };
    match fields {
        FieldValidation::Strict => errors.extend(unknown),
        FieldValidation::Warn => warnings.extend(ctx.errors(unknown).into_iter().map(|mut e| {
            e.message = e
                .message
                .replacen("unknown field", "unknown field, ignored", 1);
            e.to_string()
        })),
        FieldValidation::Ignore => {}
    }
    if !errors.is_empty() {
        return invalid(ctx, Some(kind), ctx.errors(errors));
    }
    if let Some(o) = json.as_object_mut() {
        o.insert("metadata".into(), Value::Object(meta));
        o.insert("apiVersion".into(), Value::from(api_version.clone()));
    }
    match decode(kind, &json) {
        Ok(object) => Outcome::Valid {
            kind,
            key,
            object: Box::new(object),
            json,
        },
        Err((path, message)) => invalid(ctx, Some(kind), vec![ctx.error(&path, message)]),
    }
}

/// Unknown fields of a Portcullis kind: a field of the Envoy Gateway API
/// that Portcullis does not implement is named as such (a likely typo keeps
/// its suggestion).
fn strict_unknown(pruned: Vec<FieldError>) -> Vec<FieldError> {
    pruned
        .into_iter()
        .map(|mut e| {
            if !e.message.contains("did you mean") {
                e.message = "unknown field: not supported by Portcullis (the schema lists every implemented field)".into();
            }
            e
        })
        .collect()
}

/// Fields of ObjectMeta the API server sets itself: dropped from files.
const SERVER_SET: &[&str] = &[
    "selfLink",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
];
/// Fields of ObjectMeta kept from files.
const KEPT: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
];

fn check_metadata(
    kind: Kind,
    meta: &mut Map<String, Value>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
    unknown: &mut Vec<FieldError>,
) -> Option<ObjectKey> {
    let path = FieldPath::default().field("metadata");
    for k in meta.keys().cloned().collect::<Vec<_>>() {
        if SERVER_SET.contains(&k.as_str()) {
            meta.remove(&k);
        } else if k == "generateName" {
            errors.push(FieldError::new(
                &path.field(&k),
                "generateName is not supported in files: set metadata.name",
            ));
        } else if !KEPT.contains(&k.as_str()) {
            meta.remove(&k);
            let known = KEPT.iter().chain(SERVER_SET).copied();
            unknown.push(FieldError::new(
                &path.field(&k),
                schema::unknown_field_message(&k, known, "ObjectMeta"),
            ));
        }
    }
    let name = match meta.get("name") {
        Some(Value::String(n)) if !n.is_empty() => {
            if let Some(e) = builtin::name_error(kind, n) {
                errors.push(FieldError::new(&path.field("name"), e));
            }
            n.clone()
        }
        Some(Value::String(_)) | None => {
            errors.push(FieldError::new(
                &path.field("name"),
                "required value is missing",
            ));
            String::new()
        }
        Some(other) => {
            errors.push(FieldError::new(
                &path.field("name"),
                format!("must be a string, got {}", schema::show(other)),
            ));
            String::new()
        }
    };
    let namespace = if kind.namespaced() {
        match meta.get("namespace") {
            None | Some(Value::Null) => "default".to_string(),
            Some(Value::String(ns)) if ns.is_empty() => "default".to_string(),
            Some(Value::String(ns)) => {
                if let Some(e) = builtin::dns_label(ns) {
                    errors.push(FieldError::new(&path.field("namespace"), e));
                }
                ns.clone()
            }
            Some(other) => {
                let msg = format!("must be a string, got {}", schema::show(other));
                errors.push(FieldError::new(&path.field("namespace"), msg));
                String::new()
            }
        }
    } else {
        if meta
            .get("namespace")
            .is_some_and(|n| n.as_str() != Some(""))
        {
            warnings.push(FieldError::new(
                &path.field("namespace"),
                format!("{kind} is cluster-scoped: the namespace is ignored"),
            ));
        }
        meta.remove("namespace");
        String::new()
    };
    if kind.namespaced() {
        meta.insert("namespace".into(), Value::from(namespace.clone()));
    }
    check_string_map(meta.get("labels"), &path.field("labels"), true, errors);
    check_string_map(
        meta.get("annotations"),
        &path.field("annotations"),
        false,
        errors,
    );
    if let Some(ts) = meta.get("creationTimestamp").filter(|t| !t.is_null()) {
        let ok = ts
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok());
        if !ok {
            let msg = format!(
                "{} is not an RFC 3339 timestamp such as 2024-01-31T12:00:00Z",
                schema::show(ts)
            );
            errors.push(FieldError::new(&path.field("creationTimestamp"), msg));
        }
    }
    if let Some(uid) = meta.get("uid")
        && !uid.is_string()
    {
        errors.push(FieldError::new(
            &path.field("uid"),
            format!("must be a string, got {}", schema::show(uid)),
        ));
    }
    (!name.is_empty()).then(|| ObjectKey::new(namespace, name))
}

fn check_string_map(
    v: Option<&Value>,
    path: &FieldPath,
    labels: bool,
    errors: &mut Vec<FieldError>,
) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return;
    };
    let Some(map) = v.as_object() else {
        errors.push(FieldError::new(
            path,
            format!("must be a map of strings, got {}", schema::show(v)),
        ));
        return;
    };
    for (k, val) in map {
        if let Some(e) = builtin::qualified_name(k) {
            errors.push(FieldError::new(&path.key(k), format!("invalid key: {e}")));
        }
        match val.as_str() {
            None => errors.push(FieldError::new(
                &path.key(k),
                format!("must be a string, got {}", schema::show(val)),
            )),
            Some(s) if labels => {
                if let Some(e) = builtin::label_value(s) {
                    errors.push(FieldError::new(&path.key(k), e));
                }
            }
            Some(_) => {}
        }
    }
}

/// Remove the field at `path` (an unknown field found after defaulting).
fn remove_field(value: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut at = value;
    for seg in parents {
        let next = match seg {
            Seg::Field(f) | Seg::Key(f) => at.get_mut(f.as_str()),
            Seg::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(n) => at = n,
            None => return,
        }
    }
    if let (Seg::Field(f) | Seg::Key(f), Some(o)) = (last, at.as_object_mut()) {
        o.remove(f.as_str());
    }
}

macro_rules! decode_path {
    ($kind:expr, $value:expr; $($k:ident),*) => {
        match $kind {
            $(Kind::$k => serde_path_to_error::deserialize::<_, types::$k>($value).err()
                .map(|e| (e.path().to_string(), e.into_inner().to_string())),)*
        }
    };
}

/// Decode into the typed object; on failure, the field and the reason.
pub(crate) fn decode(kind: Kind, json: &Value) -> Result<Object, (FieldPath, String)> {
    Object::from_json(kind, json.clone()).map_err(|e| {
        let found = decode_path!(kind, json.clone();
            GatewayClass, Gateway, ListenerSet, HTTPRoute, GRPCRoute, TLSRoute, TCPRoute, UDPRoute,
            ReferenceGrant, BackendTLSPolicy, SecurityPolicy, BackendTrafficPolicy, ClientTrafficPolicy, Service, EndpointSlice, Secret, ConfigMap, Namespace, Ingress, IngressClass);
        match found {
            Some((path, msg)) if path != "." => {
                (FieldPath::parse(&path), format!("cannot decode: {msg}"))
            }
            _ => (FieldPath::default(), format!("cannot decode: {e}")),
        }
    })
}
