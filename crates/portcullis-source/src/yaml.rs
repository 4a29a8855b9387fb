//! Parsing YAML (and JSON) documents into `serde_json::Value`s while keeping
//! the line of every field, so that errors can point at the exact place.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// An object property: rendered `.name`.
    Field(String),
    /// A map key (from `additionalProperties`): rendered `[key]`.
    Key(String),
    /// A list index: rendered `[i]`.
    Index(usize),
}

/// A field path from the root of an object, e.g. `spec.rules[0].matches`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    /// The path with one more property.
    pub(crate) fn field(&self, name: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Field(name.to_string()));
        p
    }
    /// The path with one more map key.
    pub(crate) fn key(&self, name: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(name.to_string()));
        p
    }
    /// The path with one more list index.
    pub(crate) fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    /// Parse a dotted path such as `spec.rules[0].name`, as written by hand.
    pub(crate) fn parse(s: &str) -> FieldPath {
        let mut out = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                out.push(Seg::Field(name.to_string()));
            }
            for idx in rest.split('[').filter(|s| !s.is_empty()) {
                let idx = idx.trim_end_matches(']');
                match idx.parse::<usize>() {
                    Ok(i) => out.push(Seg::Index(i)),
                    Err(_) => out.push(Seg::Key(idx.trim_matches('\'').to_string())),
                }
            }
        }
        FieldPath(out)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Field(name) if i == 0 => f.write_str(name)?,
                Seg::Field(name) => write!(f, ".{name}")?,
                Seg::Key(k) => write!(f, "[{k}]")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The line of every node of a document, mirroring the shape of its value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Lines {
    /// The line of the node (of its key, for a mapping value).
    pub(crate) line: usize,
    fields: HashMap<String, Lines>,
    items: Vec<Lines>,
}

impl Lines {
    /// Lines of a document of which only the start is known.
    pub(crate) fn flat(line: usize) -> Lines {
        Lines {
            line,
            ..Lines::default()
        }
    }

    /// The line of the deepest node along `path` that exists.
    pub(crate) fn lookup(&self, path: &FieldPath) -> usize {
        let mut node = self;
        for seg in &path.0 {
            let next = match seg {
                Seg::Field(k) | Seg::Key(k) => node.fields.get(k),
                Seg::Index(i) => node.items.get(*i),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.line
    }

    /// The lines of a child, if it exists.
    pub(crate) fn child(&self, seg: &Seg) -> Option<&Lines> {
        match seg {
            Seg::Field(k) | Seg::Key(k) => self.fields.get(k),
            Seg::Index(i) => self.items.get(*i),
        }
    }
}

/// A YAML node as deserialized through serde-saphyr, with spans kept.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Node::Int(i),
            Err(_) => Node::UInt(v),
        })
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .or(Ok(Node::Float(v as f64)))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        u64::try_from(v)
            .map(Node::UInt)
            .or(Ok(Node::Float(v as f64)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            out.push(v);
        }
        Ok(Node::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<Node>, Spanned<Node>>()? {
            out.push((k, v));
        }
        Ok(Node::Map(out))
    }
}

fn line_of<T>(s: &Spanned<T>, map: &LineMap) -> usize {
    map.line(s.referenced.line() as usize)
}

/// From the parser's line numbers to the file's.
///
/// YAML 1.2 (§5.4) ends a line at LF, CR LF and a lone CR; `grep -n`, `sed`,
/// `cat -n`, most editors and the fuzz target count LF only. A lone CR (old
/// Mac line ends, or a stray byte) would otherwise make every later error
/// point past the line a user sees, even past the end of the file.
struct LineMap {
    /// For each parser line (index = line - 1), the file line; empty when
    /// the text has no lone CR and the two agree.
    lines: Vec<usize>,
}

impl LineMap {
    fn new(text: &str) -> LineMap {
        let bytes = text.as_bytes();
        let lone_cr = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        if !(0..bytes.len()).any(lone_cr) {
            return LineMap { lines: Vec::new() };
        }
        let mut lines = vec![1];
        let mut file_line = 1;
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'\n' {
                file_line += 1;
                lines.push(file_line);
            } else if lone_cr(i) {
                lines.push(file_line);
            }
        }
        LineMap { lines }
    }

    fn line(&self, parser_line: usize) -> usize {
        match parser_line.checked_sub(1).and_then(|i| self.lines.get(i)) {
            Some(l) => *l,
            None if self.lines.is_empty() => parser_line,
            // Past the last break (the parser's end-of-input position).
            None => self.lines.last().copied().unwrap_or(parser_line),
        }
    }
}

/// A mapping key as a string, the way Kubernetes' YAML decoder renders scalars.
fn key_string(node: &Node) -> String {
    match node {
        Node::Null => "null".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::UInt(u) => u.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Str(s) => s.clone(),
        Node::Seq(_) | Node::Map(_) => String::new(),
    }
}

fn convert(node: Spanned<Node>, line: usize, map: &LineMap) -> (Value, Lines) {
    let mut lines = Lines::flat(line);
    let value = match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::Number(i.into()),
        Node::UInt(u) => Value::Number(u.into()),
        Node::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let l = line_of(&item, map);
                let (v, li) = convert(item, l, map);
                out.push(v);
                lines.items.push(li);
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = key_string(&k.value);
                let (v, li) = convert(v, line_of(&k, map), map);
                lines.fields.insert(key.clone(), li);
                out.insert(key, v);
            }
            Value::Object(out)
        }
    };
    (value, lines)
}

/// A parsed document: its value and the line of each of its nodes.
#[derive(Debug)]
pub(crate) struct Doc {
    /// The document as JSON.
    pub(crate) value: Value,
    /// Lines of every node.
    pub(crate) lines: Lines,
}

/// A syntax error: a message and the line it is at (0 when unknown).
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

fn yaml_error(e: serde_saphyr::Error, map: &LineMap) -> SyntaxError {
    let location = e.location();
    let line = location.map(|l| map.line(l.line() as usize)).unwrap_or(0);
    // The Display of serde-saphyr errors is `error: line L column C: message`
    // followed by a source snippet; keep the message and the column.
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim();
    let message = match first
        .strip_prefix("error: line ")
        .and_then(|r| r.split_once(": "))
    {
        Some((_, m)) => m,
        None => first.strip_prefix("error: ").unwrap_or(first),
    };
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(message);
    let message = match location.map(|l| l.column()).filter(|c| *c > 0) {
        Some(c) => format!("{message} (column {c})"),
        None => message.to_string(),
    };
    SyntaxError { line, message }
}

/// Parse a (possibly multi-document) YAML text.
pub(crate) fn parse_yaml(text: &str) -> Result<Vec<Doc>, SyntaxError> {
    // YAML 1.2 core booleans only: `y`, `no`, `on` stay strings.
    // Larger limits than serde-saphyr's defaults (1,024 documents, 250,000
    // nodes), which a generated manifest file can exceed; alias bombs stay
    // bounded by the default alias limits.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = 10_000;
    budget.max_documents = 1_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_events = 200_000_000;
    // Aliases: Kubernetes manifests rarely use them; a "billion laughs"
    // bomb must fail before it allocates (10,000 replayed events is ~1 MB of
    // nodes), not after.
    let alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: 10_000,
        max_replay_stack_depth: 16,
    };
    let options = serde_saphyr::options! {
        strict_booleans: true,
        budget: Some(budget),
        alias_limits: alias_limits,
    };
    let map = LineMap::new(text);
    let docs: Vec<Spanned<Node>> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| yaml_error(e, &map))?;
    Ok(docs
        .into_iter()
        .filter(|d| !matches!(d.value, Node::Null))
        .map(|d| {
            let line = line_of(&d, &map).max(1);
            let (value, lines) = convert(d, line, &map);
            Doc { value, lines }
        })
        .collect())
}

/// Parse a JSON text: one document (an object, possibly a `List`).
///
/// JSON is read through the YAML parser first, which gives a line for every
/// field; if that fails, serde_json decides, with the document's start line.
pub(crate) fn parse_json(text: &str) -> Result<Vec<Doc>, SyntaxError> {
    match serde_json::from_str::<Value>(text) {
        Err(e) => Err(SyntaxError {
            line: e.line(),
            message: e.to_string(),
        }),
        Ok(value) => match parse_yaml(text) {
            Ok(docs) if docs.len() == 1 && docs[0].value == value => Ok(docs),
            _ => {
                let start = text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
                Ok(vec![Doc {
                    value,
                    lines: Lines::flat(start),
                }])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_fields_and_items() {
        let text = "a: 1\nb:\n  c:\n  - x: 1\n    y: two\n  - x: 3\n---\n# empty\n---\nz: [1, 2]\n";
        let docs = parse_yaml(text).unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d.value["b"]["c"][1]["x"], 3);
        assert_eq!(d.lines.lookup(&FieldPath::parse("a")), 1);
        assert_eq!(d.lines.lookup(&FieldPath::parse("b.c")), 3);
        assert_eq!(d.lines.lookup(&FieldPath::parse("b.c[0].y")), 5);
        assert_eq!(d.lines.lookup(&FieldPath::parse("b.c[1].x")), 6);
        // Missing fields fall back to the deepest existing ancestor.
        assert_eq!(d.lines.lookup(&FieldPath::parse("b.c[1].nope.deeper")), 6);
        assert_eq!(docs[1].lines.lookup(&FieldPath::parse("z")), 10);
        assert_eq!(docs[1].value["z"], serde_json::json!([1, 2]));
    }

    #[test]
    fn scalars_keep_their_types() {
        let docs = parse_yaml(
            "y: n\ns: '80'\ni: 80\nf: 1.5\nb: true\nn: null\nbig: 18446744073709551615\n",
        )
        .unwrap();
        let v = &docs[0].value;
        assert_eq!(v["y"], "n");
        assert_eq!(v["s"], "80");
        assert_eq!(v["i"], 80);
        assert_eq!(v["f"], 1.5);
        assert_eq!(v["b"], true);
        assert!(v["n"].is_null());
        assert_eq!(v["big"], serde_json::json!(18446744073709551615u64));
    }

    #[test]
    fn many_documents() {
        let text = "a: 1\n---\n".repeat(5000);
        assert_eq!(parse_yaml(&text).unwrap().len(), 5000);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse_yaml("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
        let e = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2, "{e:?}");
    }

    #[test]
    fn lines_count_line_feeds_when_a_lone_cr_is_in_the_text() {
        // YAML ends a line at a lone CR; `grep -n` and editors do not. The
        // fuzzer found objects said to start past the file's last line.
        let text = "a: 1\r\r\rb: 2\n---\nc:\r\n  d: 3\r\n";
        let docs = parse_yaml(text).unwrap();
        assert_eq!(docs[0].lines.lookup(&FieldPath::parse("a")), 1);
        assert_eq!(docs[0].lines.lookup(&FieldPath::parse("b")), 1);
        assert_eq!(docs[1].lines.line, 3);
        assert_eq!(docs[1].lines.lookup(&FieldPath::parse("c.d")), 4);
        let e = parse_yaml("a: 1\r\r\ra: 2\nb: 3\n").unwrap_err();
        assert_eq!(e.line, 1, "{e:?}");
        // CR LF alone: the parser's lines are the file's.
        let docs = parse_yaml("a: 1\r\n\r\nb: 2\r\n").unwrap();
        assert_eq!(docs[0].lines.lookup(&FieldPath::parse("b")), 3);
    }

    #[test]
    fn json_documents_have_lines() {
        let docs = parse_json("{\n  \"a\": {\n    \"b\": [\n      1\n    ]\n  }\n}\n").unwrap();
        assert_eq!(docs[0].lines.lookup(&FieldPath::parse("a.b")), 3);
        let e = parse_json("{\n \"a\": 1,\n}\n").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn paths_render_and_parse() {
        let p = FieldPath::default()
            .field("spec")
            .field("rules")
            .index(0)
            .field("x")
            .key("a/b");
        assert_eq!(p.to_string(), "spec.rules[0].x[a/b]");
        assert_eq!(
            FieldPath::parse("spec.rules[0].x").to_string(),
            "spec.rules[0].x"
        );
    }
}
