//! Unit tests of the structural schema: pruning, defaults, validation.

use super::*;
use serde_json::json;

fn schema(v: Value) -> Schema {
    Schema::parse(&v).unwrap()
}

fn errors(s: &Schema, v: &Value) -> Vec<String> {
    let mut val = Validator::default();
    val.validate(v, s, &FieldPath::default(), None);
    val.errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect()
}

fn defaulted(s: &Schema, mut v: Value) -> (Value, Vec<String>) {
    let mut w = Vec::new();
    prune_and_default(&mut v, s, &FieldPath::default(), &mut w);
    (v, w.iter().map(|e| e.path.to_string()).collect())
}

#[test]
fn defaults_recurse_into_items_and_defaulted_objects() {
    let s = schema(json!({
        "type": "object",
        "properties": {
            "list": {"type": "array", "items": {"type": "object", "properties": {
                "a": {"type": "string", "default": "x"},
                "b": {"type": "integer"}
            }}},
            "obj": {"type": "object", "default": {}, "properties": {
                "inner": {"type": "object", "default": {"k": "v"}, "properties": {
                    "k": {"type": "string"}, "n": {"type": "integer", "default": 3}
                }}
            }},
            "kept": {"type": "string", "default": "d"},
            "nullable": {"type": "string", "nullable": true},
            "dropped": {"type": "string", "default": "again"}
        }
    }));
    let (v, pruned) = defaulted(
        &s,
        json!({"list": [{"b": 1}, {"a": "y"}], "kept": "mine", "nullable": null, "dropped": null, "extra": 1}),
    );
    assert_eq!(
        v,
        json!({
            "list": [{"a": "x", "b": 1}, {"a": "y"}],
            "obj": {"inner": {"k": "v", "n": 3}},
            "kept": "mine",
            "nullable": null,
            "dropped": "again"
        })
    );
    assert_eq!(pruned, ["extra"]);
}

#[test]
fn maps_and_preserved_fields_are_not_pruned() {
    let s = schema(json!({"type": "object", "properties": {
        "m": {"type": "object", "additionalProperties": {"type": "string"}},
        "p": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "closed": {"type": "object"}
    }}));
    let (v, pruned) = defaulted(
        &s,
        json!({"m": {"a": "b"}, "p": {"any": [1]}, "closed": {"x": 1}}),
    );
    assert_eq!(v, json!({"m": {"a": "b"}, "p": {"any": [1]}, "closed": {}}));
    assert_eq!(pruned, ["closed.x"]);
}

#[test]
fn types_formats_and_bounds() {
    let s = schema(json!({"type": "object", "properties": {
        "i32": {"type": "integer", "format": "int32"},
        "n": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
        "t": {"type": "string", "format": "date-time"},
        "v4": {"type": "string", "format": "ipv4"},
        "v6": {"type": "string", "format": "ipv6"},
        "b": {"type": "boolean"},
        "e": {"type": "string", "enum": ["A", "B"]},
        "s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"}
    }}));
    let ok = json!({"i32": 5, "n": 0.5, "t": "2024-01-01T00:00:00Z", "v4": "1.2.3.4", "v6": "::1", "b": true, "e": "A", "s": "ab"});
    assert!(errors(&s, &ok).is_empty());
    let bad = json!({"i32": 3_000_000_000u64, "n": 1, "t": "yesterday", "v4": "1.2.3", "v6": "1.2.3.4", "b": "true", "e": "C", "s": "A"});
    assert_eq!(
        errors(&s, &bad),
        [
            "b: must be of type boolean, got string \"true\"",
            "e: unsupported value \"C\": supported values: \"A\", \"B\"",
            "i32: 3000000000 does not fit in a 32-bit integer",
            "n: must be less than 1, is 1",
            "s: must be at least 2 characters long, is 1",
            "s: invalid value \"A\": must match the regular expression '^[a-z]+$'",
            "t: \"yesterday\" is not an RFC 3339 date-time",
            "v4: \"1.2.3\" is not a valid IPv4 address",
            "v6: \"1.2.3.4\" is not a valid IPv6 address",
        ]
    );
    assert_eq!(
        errors(&s, &json!({"n": 0})),
        ["n: must be greater than 0, is 0"]
    );
    assert_eq!(
        errors(&s, &json!([])),
        [": must be of type object, got array []"]
    );
    assert_eq!(
        errors(&s, &json!({"s": "abcd"})),
        ["s: must be at most 3 characters long, is 4"]
    );
}

#[test]
fn list_types_and_sizes() {
    let s = schema(json!({"type": "object", "properties": {
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}, "maxItems": 3},
        "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "port"],
                "minItems": 1, "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
        "props": {"type": "object", "maxProperties": 1, "minProperties": 1, "additionalProperties": {"type": "string"}}
    }}));
    let v = json!({
        "set": ["a", "b", "a", "c"],
        "map": [{"name": "x", "port": 1}, {"name": "x", "port": 2}, {"name": "x", "port": 1}],
        "props": {"a": "1", "b": "2"}
    });
    assert_eq!(
        errors(&s, &v),
        [
            "map[2]: duplicate entry: an earlier item has the same name \"x\" and port 1",
            "props: must have at most 1 entries, has 2",
            "set: must have at most 3 items, has 4",
            "set[2]: duplicate value \"a\"",
        ]
    );
    assert_eq!(
        errors(&s, &json!({"map": [], "props": {}})),
        [
            "map: must have at least 1 item, has 0",
            "props: must have at least 1 entries, has 0"
        ]
    );
}

#[test]
fn combinators() {
    let s = schema(json!({
        "type": "object",
        "properties": {"kind": {"type": "string"}, "value": {"type": "string"}},
        "allOf": [{"required": ["kind"]}],
        "anyOf": [{"properties": {"value": {"format": "ipv4"}}}, {"properties": {"value": {"format": "ipv6"}}}],
        "not": {"properties": {"kind": {"enum": ["forbidden"]}}, "required": ["kind"]}
    }));
    assert!(errors(&s, &json!({"kind": "a", "value": "::1"})).is_empty());
    assert_eq!(
        errors(&s, &json!({"value": "x"})),
        [
            "kind: required value is missing",
            ": must satisfy at least one of: value: \"x\" is not a valid IPv4 address or value: \"x\" is not a valid IPv6 address",
        ]
    );
    assert_eq!(
        errors(&s, &json!({"kind": "forbidden"})),
        [": {\"kind\":\"forbidden\"} is not allowed here"]
    );
}

#[test]
fn cel_rules_report_at_their_node_or_field_path() {
    let s = schema(json!({"type": "object", "properties": {
        "spec": {"type": "object",
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max", "fieldPath": ".min"},
                {"rule": "self.max < 100", "message": "max too large"}
            ]}
    }}));
    assert_eq!(
        errors(&s, &json!({"spec": {"min": 5, "max": 200}})),
        ["spec: max too large"],
    );
    assert_eq!(
        errors(&s, &json!({"spec": {"min": 5, "max": 1}})),
        ["spec.min: min must not exceed max"],
    );
    // Rules do not run on a node that already failed the schema.
    assert_eq!(
        errors(&s, &json!({"spec": {"min": "5", "max": 200}})),
        ["spec.min: must be of type integer, got string \"5\""],
    );
}
