//! OpenAPI v3 structural schemas as the Kubernetes API server applies them to
//! custom resources: pruning (and reporting) of unknown fields, defaulting, and validation
//! (types, formats, bounds, enums, patterns, list types and the CEL rules of
//! `x-kubernetes-validations`).

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;
use serde_json::{Map, Value};

use crate::cel::{self, Rule};
use crate::yaml::FieldPath;

/// A problem with one field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FieldError {
    /// Where, from the root of the object.
    pub(crate) path: FieldPath,
    /// What is wrong.
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(path: &FieldPath, message: impl Into<String>) -> Self {
        FieldError {
            path: path.clone(),
            message: message.into(),
        }
    }
}

/// One node of a structural schema.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    ty: Option<String>,
    pub(crate) properties: BTreeMap<String, Schema>,
    required: Vec<String>,
    pub(crate) items: Option<Box<Schema>>,
    pub(crate) additional: Option<Box<Schema>>,
    preserve_unknown: bool,
    default: Option<Value>,
    nullable: bool,
    enum_values: Option<Vec<Value>>,
    pattern: Option<(String, Regex)>,
    format: Option<String>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    min_items: Option<u64>,
    max_items: Option<u64>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    one_of: Vec<Schema>,
    any_of: Vec<Schema>,
    all_of: Vec<Schema>,
    not: Option<Box<Schema>>,
    pub(crate) rules: Vec<Rule>,
}

impl Schema {
    /// Build a schema node from its JSON (an `openAPIV3Schema` or part of one).
    pub(crate) fn parse(v: &Value) -> Result<Schema, String> {
        let o = v.as_object().ok_or("schema is not an object")?;
        let u = |k: &str| o.get(k).and_then(Value::as_u64);
        let f = |k: &str| o.get(k).and_then(Value::as_f64);
        let b = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
        let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let list = |k: &str| -> Result<Vec<Schema>, String> {
            o.get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Schema::parse).collect())
                .unwrap_or(Ok(Vec::new()))
        };
        let mut properties = BTreeMap::new();
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                properties.insert(k.clone(), Schema::parse(p)?);
            }
        }
        let pattern = match s("pattern") {
            Some(p) => {
                let re = Regex::new(&p).map_err(|e| format!("pattern {p:?}: {e}"))?;
                Some((p, re))
            }
            None => None,
        };
        let additional = match o.get("additionalProperties") {
            Some(Value::Bool(true)) => Some(Box::new(Schema::default())),
            Some(a @ Value::Object(_)) => Some(Box::new(Schema::parse(a)?)),
            _ => None,
        };
        let rules = match o.get("x-kubernetes-validations").and_then(Value::as_array) {
            Some(a) => a.iter().map(Rule::parse).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Schema {
            ty: s("type"),
            properties,
            required: o
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            items: match o.get("items") {
                Some(i) => Some(Box::new(Schema::parse(i)?)),
                None => None,
            },
            additional,
            preserve_unknown: b("x-kubernetes-preserve-unknown-fields"),
            default: o.get("default").cloned(),
            nullable: b("nullable"),
            enum_values: o.get("enum").and_then(Value::as_array).cloned(),
            pattern,
            format: s("format"),
            min_length: u("minLength"),
            max_length: u("maxLength"),
            minimum: f("minimum"),
            maximum: f("maximum"),
            exclusive_minimum: b("exclusiveMinimum"),
            exclusive_maximum: b("exclusiveMaximum"),
            min_items: u("minItems"),
            max_items: u("maxItems"),
            min_properties: u("minProperties"),
            max_properties: u("maxProperties"),
            list_type: s("x-kubernetes-list-type"),
            list_map_keys: o
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            one_of: list("oneOf")?,
            any_of: list("anyOf")?,
            all_of: list("allOf")?,
            not: match o.get("not") {
                Some(n) => Some(Box::new(Schema::parse(n)?)),
                None => None,
            },
            rules,
        })
    }

    /// Every rule of this node and below, with the schema path it hangs from.
    #[cfg(test)]
    pub(crate) fn all_rules<'a>(&'a self, at: &str, out: &mut Vec<(String, &'a Rule)>) {
        out.extend(self.rules.iter().map(|r| (at.to_string(), r)));
        for (k, p) in &self.properties {
            p.all_rules(&format!("{at}.{k}"), out);
        }
        if let Some(i) = &self.items {
            i.all_rules(&format!("{at}[*]"), out);
        }
        if let Some(a) = &self.additional {
            a.all_rules(&format!("{at}[*]"), out);
        }
    }

    fn is_object_like(&self) -> bool {
        self.ty.as_deref() == Some("object")
            || !self.properties.is_empty()
            || self.additional.is_some()
    }
}

/// A short rendering of a value for messages.
pub(crate) fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `unknown field`, with a suggestion when a known field is spelled alike
/// (`unknown field (did you mean "backendRefs"?)`), else naming `what` the
/// field is not in, if given.
pub(crate) fn unknown_field_message<'a>(
    name: &str,
    known: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> String {
    let lower = name.to_ascii_lowercase();
    let best = known
        .into_iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), k))
        .min();
    match best {
        Some((d, k)) if d <= (name.chars().count() / 3).max(1) => {
            format!("unknown field (did you mean {k:?}?)")
        }
        _ if what.is_empty() => "unknown field".to_string(),
        _ => format!("unknown field (not in {what})"),
    }
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (diag + usize::from(ca != *cb)).min(up + 1).min(row[j] + 1);
            diag = up;
        }
    }
    row[b.len()]
}

/// Prune unknown fields and non-nullable nulls, then fill defaults, the way
/// the API server does before validating. Every pruned unknown field is
/// reported in `unknown` (the caller decides whether that is an error, as
/// kubectl's field validation does); fields under a schema node marked
/// `x-kubernetes-preserve-unknown-fields` are kept and not reported.
pub(crate) fn prune_and_default(
    value: &mut Value,
    schema: &Schema,
    path: &FieldPath,
    unknown: &mut Vec<FieldError>,
) {
    match value {
        Value::Object(obj) if schema.is_object_like() => {
            if !schema.preserve_unknown && schema.additional.is_none() {
                let found: Vec<String> = obj
                    .keys()
                    .filter(|k| !schema.properties.contains_key(*k))
                    .cloned()
                    .collect();
                for k in found {
                    obj.remove(&k);
                    let known = schema.properties.keys().map(String::as_str);
                    unknown.push(FieldError::new(
                        &path.field(&k),
                        unknown_field_message(&k, known, ""),
                    ));
                }
            }
            let nulls: Vec<String> = obj
                .iter()
                .filter(|(k, v)| {
                    v.is_null() && schema.properties.get(*k).is_some_and(|p| !p.nullable)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in nulls {
                obj.remove(&k);
            }
            for (k, p) in &schema.properties {
                if let Some(d) = &p.default
                    && !obj.contains_key(k)
                {
                    obj.insert(k.clone(), d.clone());
                }
            }
            for (k, v) in obj.iter_mut() {
                if let Some(p) = schema.properties.get(k) {
                    prune_and_default(v, p, &path.field(k), unknown);
                } else if let Some(a) = &schema.additional {
                    prune_and_default(v, a, &path.key(k), unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = &schema.items {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_and_default(v, item_schema, &path.index(i), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Validation state shared along one walk.
pub(crate) struct Validator {
    /// Errors found so far.
    pub(crate) errors: Vec<FieldError>,
    /// Whether to evaluate CEL rules (sub-schemas of `oneOf` etc. have none).
    cel: bool,
}

impl Default for Validator {
    fn default() -> Self {
        Validator {
            errors: Vec::new(),
            cel: true,
        }
    }
}

impl Validator {
    fn err(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    /// Validate `value` against `schema`. `old` is the previous version of the
    /// same node, if any (for transition rules). Returns whether it is valid.
    pub(crate) fn validate(
        &mut self,
        value: &Value,
        schema: &Schema,
        path: &FieldPath,
        old: Option<&Value>,
    ) -> bool {
        let before = self.errors.len();
        if value.is_null() {
            if !schema.nullable && schema.ty.is_some() {
                self.err(
                    path,
                    format!(
                        "must be of type {}, got null",
                        schema.ty.as_deref().unwrap_or("?")
                    ),
                );
            }
            return self.errors.len() == before;
        }
        if let Some(ty) = &schema.ty {
            let ok = match ty.as_str() {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                self.err(
                    path,
                    format!(
                        "must be of type {ty}, got {} {}",
                        type_name(value),
                        show(value)
                    ),
                );
                return false;
            }
        }
        match value {
            Value::Object(obj) => self.object(obj, schema, path, old),
            Value::Array(items) => self.array(items, schema, path, old),
            Value::String(s) => self.string(s, schema, path),
            Value::Number(_) => self.number(value, schema, path),
            _ => {}
        }
        if let Some(allowed) = &schema.enum_values
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(show).collect();
            self.err(
                path,
                format!(
                    "unsupported value {}: supported values: {}",
                    show(value),
                    list.join(", ")
                ),
            );
        }
        self.combinators(value, schema, path);
        if self.errors.len() == before && self.cel && !schema.rules.is_empty() {
            self.rules(value, schema, path, old);
        }
        self.errors.len() == before
    }

    fn object(
        &mut self,
        obj: &Map<String, Value>,
        schema: &Schema,
        path: &FieldPath,
        old: Option<&Value>,
    ) {
        for r in &schema.required {
            if !obj.contains_key(r) {
                self.err(&path.field(r), "required value is missing");
            }
        }
        if let Some(max) = schema.max_properties
            && obj.len() as u64 > max
        {
            self.err(
                path,
                format!("must have at most {max} entries, has {}", obj.len()),
            );
        }
        if let Some(min) = schema.min_properties
            && (obj.len() as u64) < min
        {
            self.err(
                path,
                format!("must have at least {min} entries, has {}", obj.len()),
            );
        }
        let old_obj = old.and_then(Value::as_object);
        for (k, v) in obj {
            let old_v = old_obj.and_then(|o| o.get(k));
            if let Some(p) = schema.properties.get(k) {
                self.validate(v, p, &path.field(k), old_v);
            } else if let Some(a) = &schema.additional {
                self.validate(v, a, &path.key(k), old_v);
            }
        }
    }

    fn array(&mut self, items: &[Value], schema: &Schema, path: &FieldPath, old: Option<&Value>) {
        if let Some(max) = schema.max_items
            && items.len() as u64 > max
        {
            self.err(
                path,
                format!("must have at most {max} items, has {}", items.len()),
            );
        }
        if let Some(min) = schema.min_items
            && (items.len() as u64) < min
        {
            self.err(
                path,
                format!(
                    "must have at least {min} item{}, has {}",
                    if min == 1 { "" } else { "s" },
                    items.len()
                ),
            );
        }
        match schema.list_type.as_deref() {
            Some("set") => {
                for (i, v) in items.iter().enumerate() {
                    if items[..i].contains(v) {
                        self.err(&path.index(i), format!("duplicate value {}", show(v)));
                    }
                }
            }
            Some("map") => {
                let mut seen = HashSet::new();
                for (i, v) in items.iter().enumerate() {
                    let key = map_key(v, &schema.list_map_keys);
                    if !seen.insert(key.to_string()) {
                        let desc: Vec<String> = schema
                            .list_map_keys
                            .iter()
                            .map(|k| format!("{k} {}", show(v.get(k).unwrap_or(&Value::Null))))
                            .collect();
                        self.err(
                            &path.index(i),
                            format!(
                                "duplicate entry: an earlier item has the same {}",
                                desc.join(" and ")
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
        if let Some(item_schema) = &schema.items {
            // Only items of map lists can be matched with their old version.
            let old_items = old
                .and_then(Value::as_array)
                .filter(|_| schema.list_type.as_deref() == Some("map"));
            for (i, v) in items.iter().enumerate() {
                let old_v = old_items.and_then(|o| {
                    let key = map_key(v, &schema.list_map_keys);
                    o.iter()
                        .find(|ov| map_key(ov, &schema.list_map_keys) == key)
                });
                self.validate(v, item_schema, &path.index(i), old_v);
            }
        }
    }

    fn string(&mut self, s: &str, schema: &Schema, path: &FieldPath) {
        let len = s.chars().count() as u64;
        if let Some(max) = schema.max_length
            && len > max
        {
            self.err(
                path,
                format!("must be at most {max} characters long, is {len}"),
            );
        }
        if let Some(min) = schema.min_length
            && len < min
        {
            if min == 1 {
                self.err(path, "must not be empty");
            } else {
                self.err(
                    path,
                    format!("must be at least {min} characters long, is {len}"),
                );
            }
        }
        if let Some((p, re)) = &schema.pattern
            && !re.is_match(s)
        {
            self.err(
                path,
                format!(
                    "invalid value {}: must match the regular expression '{p}'",
                    show(&Value::from(s))
                ),
            );
        }
        match schema.format.as_deref() {
            Some("ipv4") if s.parse::<Ipv4Addr>().is_err() => {
                self.err(
                    path,
                    format!("{} is not a valid IPv4 address", show(&Value::from(s))),
                );
            }
            Some("ipv6") if s.parse::<Ipv6Addr>().is_err() => {
                self.err(
                    path,
                    format!("{} is not a valid IPv6 address", show(&Value::from(s))),
                );
            }
            Some("date-time") if chrono::DateTime::parse_from_rfc3339(s).is_err() => {
                self.err(
                    path,
                    format!("{} is not an RFC 3339 date-time", show(&Value::from(s))),
                );
            }
            _ => {}
        }
    }

    fn number(&mut self, v: &Value, schema: &Schema, path: &FieldPath) {
        let n = v.as_f64().unwrap_or(0.0);
        if let Some(min) = schema.minimum {
            if schema.exclusive_minimum && n <= min {
                self.err(path, format!("must be greater than {min}, is {v}"));
            } else if n < min {
                self.err(
                    path,
                    format!("must be greater than or equal to {min}, is {v}"),
                );
            }
        }
        if let Some(max) = schema.maximum {
            if schema.exclusive_maximum && n >= max {
                self.err(path, format!("must be less than {max}, is {v}"));
            } else if n > max {
                self.err(path, format!("must be less than or equal to {max}, is {v}"));
            }
        }
        if schema.format.as_deref() == Some("int32")
            && v.as_i64().is_none_or(|i| i32::try_from(i).is_err())
        {
            self.err(path, format!("{v} does not fit in a 32-bit integer"));
        }
    }

    /// `oneOf`, `anyOf`, `allOf` and `not`: value-only sub-schemas.
    fn combinators(&mut self, value: &Value, schema: &Schema, path: &FieldPath) {
        let check = |s: &Schema| {
            let mut v = Validator {
                cel: false,
                ..Validator::default()
            };
            v.validate(value, s, path, None);
            v.errors
        };
        for s in &schema.all_of {
            self.errors.extend(check(s));
        }
        if !schema.any_of.is_empty() {
            let results: Vec<_> = schema.any_of.iter().map(check).collect();
            if results.iter().all(|r| !r.is_empty()) {
                self.err(
                    path,
                    format!(
                        "must satisfy at least one of: {}",
                        alternatives(path, &results)
                    ),
                );
            }
        }
        if !schema.one_of.is_empty() {
            let results: Vec<_> = schema.one_of.iter().map(check).collect();
            match results.iter().filter(|r| r.is_empty()).count() {
                1 => {}
                0 => self.err(
                    path,
                    format!(
                        "must satisfy exactly one of: {}",
                        alternatives(path, &results)
                    ),
                ),
                n => self.err(
                    path,
                    format!("must satisfy exactly one of the alternatives, satisfies {n}"),
                ),
            }
        }
        if let Some(n) = &schema.not
            && check(n).is_empty()
        {
            self.err(path, format!("{} is not allowed here", show(value)));
        }
    }

    fn rules(&mut self, value: &Value, schema: &Schema, path: &FieldPath, old: Option<&Value>) {
        let this = cel::to_cel(value, schema);
        let old_cel = old.map(|o| cel::to_cel(o, schema));
        for rule in &schema.rules {
            if rule.transition && old_cel.is_none() {
                continue;
            }
            if let Some(message) = rule.check(&this, old_cel.as_ref()) {
                let at = match &rule.field_path {
                    Some(fp) => FieldPath(
                        path.0
                            .iter()
                            .cloned()
                            .chain(FieldPath::parse(fp).0)
                            .collect(),
                    ),
                    None => path.clone(),
                };
                self.err(&at, message);
            }
        }
    }
}

fn map_key(v: &Value, keys: &[String]) -> Value {
    Value::Array(
        keys.iter()
            .map(|k| v.get(k).cloned().unwrap_or(Value::Null))
            .collect(),
    )
}

fn alternatives(at: &FieldPath, results: &[Vec<FieldError>]) -> String {
    let parts: Vec<String> = results
        .iter()
        .map(|errs| {
            let msgs: Vec<String> = errs
                .iter()
                .map(|e| {
                    let rel = FieldPath(e.path.0.iter().skip(at.0.len()).cloned().collect());
                    if rel.0.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{rel}: {}", e.message)
                    }
                })
                .collect();
            let text = msgs.join("; ");
            if text.contains(" or ") || text.contains("; ") {
                format!("({text})")
            } else {
                text
            }
        })
        .collect();
    parts.join(" or ")
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
