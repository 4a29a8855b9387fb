//! A small interpreter of the Go template subset the chart uses, with the
//! Helm/Sprig functions it calls, so the chart is rendered (and the plain
//! manifests generated) without Helm. Anything outside the subset is an error,
//! never a silent difference; CI also runs the real Helm and compares.
//!
//! Supported: text with `{{-`/`-}}` trimming and `{{/* comments */}}`;
//! `if`/`else if`/`else`, `with`/`else`, `range` (over lists, with `$x :=`),
//! `define`, `end`; pipelines with `|` and parentheses; `.a.b`, `$.a.b`,
//! `$x.a`, `.`, `$`; string, number and boolean literals; `$x := …`; and the
//! functions `include toYaml nindent indent quote printf trunc trimSuffix
//! replace default contains join int eq ne gt ge lt le and or not empty has
//! fail len`.

use std::collections::BTreeMap;

use serde_json::Value;

/// A template error: what, where.
#[derive(Debug)]
pub struct TmplError(pub String);

impl std::fmt::Display for TmplError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type R<T> = Result<T, TmplError>;

fn err<T>(m: impl Into<String>) -> R<T> {
    Err(TmplError(m.into()))
}

#[derive(Clone, Debug)]
enum Tok {
    Str(String),
    Num(f64),
    Ident(String),
    /// `.a.b` (empty for `.`).
    Field(Vec<String>),
    /// `$x.a.b` (`$` alone: name "").
    Var(String, Vec<String>),
    LParen,
    RParen,
    Pipe,
    Declare,
}

#[derive(Clone, Debug)]
enum Arg {
    Lit(Value),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Sub(Pipeline),
}

#[derive(Clone, Debug)]
struct Pipeline {
    decl: Option<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Vec<(Pipeline, Vec<Node>)>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

/// Parsed templates: the files' bodies and every `define`.
#[derive(Default)]
pub struct Templates {
    defines: BTreeMap<String, Vec<Node>>,
    files: BTreeMap<String, Vec<Node>>,
}

/// A raw piece of a template: text, or an action's words.
enum Piece {
    Text(String),
    Action(Vec<Tok>),
}

fn lex_action(s: &str) -> R<Vec<Tok>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = vec![];
    let word = |i: &mut usize| {
        let st = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_' || b[*i] == b'.') {
            *i += 1;
        }
        &s[st..*i]
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => (out.push(Tok::LParen), i += 1).1,
            b')' => (out.push(Tok::RParen), i += 1).1,
            b'|' => (out.push(Tok::Pipe), i += 1).1,
            b':' if b.get(i + 1) == Some(&b'=') => (out.push(Tok::Declare), i += 2).1,
            b'"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return err(format!("unterminated string in {{{{{s}}}}}")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            v.push(match b.get(i + 1) {
                                Some(b'n') => '\n',
                                Some(b't') => '\t',
                                Some(&c) => c as char,
                                None => return err("bad escape"),
                            });
                            i += 2;
                        }
                        Some(_) => {
                            let ch = s[i..].chars().next().expect("char");
                            v.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                i += 1;
                out.push(Tok::Str(v));
            }
            b'`' => {
                let end = s[i + 1..]
                    .find('`')
                    .ok_or(TmplError("unterminated raw string".into()))?;
                out.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'.' => {
                let w = word(&mut i);
                let path: Vec<String> = w[1..]
                    .split('.')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect();
                out.push(Tok::Field(path));
            }
            b'$' => {
                i += 1;
                let w = word(&mut i);
                let mut parts = w.split('.');
                let name = parts.next().unwrap_or_default().to_string();
                out.push(Tok::Var(
                    name,
                    parts.filter(|p| !p.is_empty()).map(String::from).collect(),
                ));
            }
            b'-' | b'0'..=b'9' => {
                let st = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                let n = s[st..i]
                    .parse()
                    .map_err(|_| TmplError(format!("bad number {}", &s[st..i])))?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() => out.push(Tok::Ident(word(&mut i).to_string())),
            _ => {
                return err(format!(
                    "unsupported character {:?} in {{{{{s}}}}}",
                    c as char
                ));
            }
        }
    }
    Ok(out)
}

fn pieces(src: &str) -> R<Vec<Piece>> {
    let mut out = vec![];
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        if trim_next {
            text = text.trim_start().to_string();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TmplError("unclosed {{".into()))?;
        let mut inner = &after[..end];
        rest = &after[end + 2..];
        if let Some(i) = inner
            .strip_prefix("- ")
            .or_else(|| inner.strip_prefix("-\n"))
        {
            text = text.trim_end().to_string();
            inner = i;
        }
        trim_next = false;
        if let Some(i) = inner
            .strip_suffix(" -")
            .or_else(|| inner.strip_suffix("\n-"))
        {
            trim_next = true;
            inner = i;
        }
        out.push(Piece::Text(text));
        let inner = inner.trim();
        if inner.starts_with("/*") {
            if !inner.ends_with("*/") {
                return err(format!("unclosed comment {inner}"));
            }
            continue;
        }
        out.push(Piece::Action(lex_action(inner)?));
    }
    out.push(Piece::Text(if trim_next {
        rest.trim_start().to_string()
    } else {
        rest.to_string()
    }));
    Ok(out)
}

fn parse_pipeline(toks: &[Tok]) -> R<Pipeline> {
    let (decl, toks) = match toks {
        [Tok::Var(n, p), Tok::Declare, rest @ ..] if p.is_empty() => (Some(n.clone()), rest),
        t => (None, t),
    };
    let mut cmds = vec![vec![]];
    let mut i = 0;
    while i < toks.len() {
        let arg = match &toks[i] {
            Tok::Pipe => {
                cmds.push(vec![]);
                i += 1;
                continue;
            }
            Tok::LParen => {
                let mut depth = 0;
                let mut j = i;
                loop {
                    match toks.get(j) {
                        Some(Tok::LParen) => depth += 1,
                        Some(Tok::RParen) => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        None => return err("unbalanced ("),
                        _ => {}
                    }
                    j += 1;
                }
                let sub = parse_pipeline(&toks[i + 1..j])?;
                i = j;
                Arg::Sub(sub)
            }
            Tok::Str(s) => Arg::Lit(Value::String(s.clone())),
            Tok::Num(n) => Arg::Lit(serde_json::json!(n)),
            Tok::Ident(w) if w == "true" || w == "false" => Arg::Lit(Value::Bool(w == "true")),
            Tok::Ident(w) if w == "nil" => Arg::Lit(Value::Null),
            Tok::Ident(w) => Arg::Func(w.clone()),
            Tok::Field(p) => Arg::Field(p.clone()),
            Tok::Var(n, p) => Arg::Var(n.clone(), p.clone()),
            t => return err(format!("unexpected {t:?}")),
        };
        cmds.last_mut().expect("cmd").push(arg);
        i += 1;
    }
    if cmds.iter().any(|c| c.is_empty()) {
        return err("empty command in pipeline");
    }
    Ok(Pipeline { decl, cmds })
}

/// Parse a list of pieces into nodes until a closing keyword (returned).
fn parse_nodes(
    it: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
    defines: &mut BTreeMap<String, Vec<Node>>,
) -> R<(Vec<Node>, Option<Vec<Tok>>)> {
    let mut nodes = vec![];
    while let Some(p) = it.next() {
        let toks = match p {
            Piece::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t));
                }
                continue;
            }
            Piece::Action(t) => t,
        };
        let kw = match toks.first() {
            Some(Tok::Ident(w)) => w.as_str(),
            _ => "",
        };
        match kw {
            "end" | "else" => return Ok((nodes, Some(toks))),
            "if" => {
                let mut branches = vec![];
                let mut cond = parse_pipeline(&toks[1..])?;
                let otherwise;
                loop {
                    let (body, close) = parse_nodes(it, defines)?;
                    branches.push((cond, body));
                    let close = close.ok_or(TmplError("if without end".into()))?;
                    match close.as_slice() {
                        [Tok::Ident(e)] if e == "end" => {
                            otherwise = vec![];
                            break;
                        }
                        [Tok::Ident(e), Tok::Ident(i), rest @ ..] if e == "else" && i == "if" => {
                            cond = parse_pipeline(rest)?;
                        }
                        [Tok::Ident(e)] if e == "else" => {
                            let (body, close) = parse_nodes(it, defines)?;
                            expect_end(close)?;
                            otherwise = body;
                            break;
                        }
                        t => return err(format!("unexpected {t:?} in if")),
                    }
                }
                nodes.push(Node::If(branches, otherwise));
            }
            "with" | "range" => {
                let p = parse_pipeline(&toks[1..])?;
                let (body, close) = parse_nodes(it, defines)?;
                let otherwise = match close.as_deref() {
                    Some([Tok::Ident(e)]) if e == "else" => {
                        let (b, close) = parse_nodes(it, defines)?;
                        expect_end(close)?;
                        b
                    }
                    _ => {
                        expect_end(close)?;
                        vec![]
                    }
                };
                nodes.push(if kw == "with" {
                    Node::With(p, body, otherwise)
                } else {
                    Node::Range(p, body, otherwise)
                });
            }
            "define" => {
                let Some(Tok::Str(name)) = toks.get(1) else {
                    return err("define needs a name");
                };
                let (body, close) = parse_nodes(it, defines)?;
                expect_end(close)?;
                defines.insert(name.clone(), body);
            }
            "template" | "block" | "break" | "continue" => {
                return err(format!("{kw} is not supported by the test renderer"));
            }
            _ => nodes.push(Node::Action(parse_pipeline(&toks)?)),
        }
    }
    Ok((nodes, None))
}

fn expect_end(close: Option<Vec<Tok>>) -> R<()> {
    match close.as_deref() {
        Some([Tok::Ident(e)]) if e == "end" => Ok(()),
        t => err(format!("expected end, got {t:?}")),
    }
}

/// Go template truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Bool(true) => true,
    }
}

fn num(v: &Value) -> R<f64> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Ok(s.parse().unwrap_or(0.0)),
        Value::Null => Ok(0.0),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        v => err(format!("not a number: {v}")),
    }
}

/// What `{{ v }}` prints.
fn print(v: &Value) -> R<String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Null => return err("printing a missing value (<no value>)"),
        v => return err(format!("printing a collection: {v}")),
    })
}

fn to_yaml(v: &Value) -> R<String> {
    let s = serde_saphyr::to_string(v).map_err(|e| TmplError(e.to_string()))?;
    Ok(s.trim_end_matches('\n').to_string())
}

fn indent(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    s.split('\n')
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn path(mut v: &Value, p: &[String]) -> Value {
    for k in p {
        match v.get(k) {
            Some(x) => v = x,
            None => return Value::Null,
        }
    }
    v.clone()
}

struct Ctx<'a> {
    t: &'a Templates,
    root: Value,
    vars: Vec<(String, Value)>,
}

impl Templates {
    /// Parse files (name → source); `_*.tpl` files only contribute `define`s.
    pub fn parse(files: &[(String, String)]) -> R<Templates> {
        let mut t = Templates::default();
        for (name, src) in files {
            let mut it = pieces(src)?.into_iter().peekable();
            let (nodes, close) = parse_nodes(&mut it, &mut t.defines)
                .map_err(|e| TmplError(format!("{name}: {e}")))?;
            if close.is_some() {
                return err(format!("{name}: end or else without a block"));
            }
            t.files.insert(name.clone(), nodes);
        }
        Ok(t)
    }

    /// Render one file with `root` (`.Values`, `.Release`, `.Chart`) as dot.
    pub fn render(&self, name: &str, root: &Value) -> R<String> {
        let nodes = self
            .files
            .get(name)
            .ok_or(TmplError(format!("no template {name}")))?;
        let mut c = Ctx {
            t: self,
            root: root.clone(),
            vars: vec![],
        };
        let mut out = String::new();
        c.nodes(nodes, root, &mut out)
            .map_err(|e| TmplError(format!("{name}: {e}")))?;
        Ok(out)
    }
}

impl Ctx<'_> {
    fn nodes(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> R<()> {
        let depth = self.vars.len();
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    match &p.decl {
                        Some(d) => self.vars.push((d.clone(), v)),
                        None => out.push_str(&print(&v)?),
                    }
                }
                Node::If(branches, otherwise) => {
                    let mut done = false;
                    for (c, body) in branches {
                        if truthy(&self.pipeline(c, dot)?) {
                            self.nodes(body, dot, out)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::With(p, body, otherwise) => {
                    let v = self.pipeline(p, dot)?;
                    if truthy(&v) {
                        self.nodes(body, &v, out)?;
                    } else {
                        self.nodes(otherwise, dot, out)?;
                    }
                }
                Node::Range(p, body, otherwise) => {
                    let v = self.pipeline(p, dot)?;
                    let items: Vec<Value> = match &v {
                        Value::Array(a) => a.clone(),
                        Value::Null => vec![],
                        Value::Object(o) => o.values().cloned().collect(),
                        v => return err(format!("range over {v}")),
                    };
                    if items.is_empty() {
                        self.nodes(otherwise, dot, out)?;
                    }
                    for item in items {
                        if let Some(d) = &p.decl {
                            self.vars.push((d.clone(), item.clone()));
                        }
                        self.nodes(body, &item, out)?;
                        if p.decl.is_some() {
                            self.vars.pop();
                        }
                    }
                }
            }
        }
        self.vars.truncate(depth);
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> R<Value> {
        let mut prev: Option<Value> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        // A declared variable is bound by the caller (per item in `range`).
        Ok(prev.unwrap_or(Value::Null))
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> R<Value> {
        Ok(match a {
            Arg::Lit(v) => v.clone(),
            Arg::Field(p) => path(dot, p),
            Arg::Var(n, p) if n.is_empty() => path(&self.root, p),
            Arg::Var(n, p) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(k, _)| k == n)
                    .ok_or(TmplError(format!("undefined variable ${n}")))?;
                path(&v.1.clone(), p)
            }
            Arg::Sub(p) => self.pipeline(p, dot)?,
            Arg::Func(f) => self.call(f, vec![])?,
        })
    }

    fn command(&mut self, cmd: &[Arg], dot: &Value, prev: Option<Value>) -> R<Value> {
        match &cmd[0] {
            Arg::Func(f) => {
                let mut args = cmd[1..]
                    .iter()
                    .map(|a| self.arg(a, dot))
                    .collect::<R<Vec<_>>>()?;
                args.extend(prev);
                self.call(f, args)
            }
            a if cmd.len() == 1 && prev.is_none() => self.arg(a, dot),
            a => err(format!("{a:?} cannot take arguments")),
        }
    }

    fn call(&mut self, f: &str, a: Vec<Value>) -> R<Value> {
        let s = |i: usize| -> R<String> {
            a.get(i)
                .map(print)
                .unwrap_or_else(|| err(format!("{f}: missing argument {i}")))
        };
        let want = |n: usize| -> R<()> {
            if a.len() == n {
                Ok(())
            } else {
                err(format!("{f} takes {n} arguments, got {}", a.len()))
            }
        };
        let cmp = |op: fn(f64, f64) -> bool| -> R<Value> {
            want(2)?;
            Ok(Value::Bool(op(num(&a[0])?, num(&a[1])?)))
        };
        Ok(match f {
            "include" => {
                want(2)?;
                let name = s(0)?;
                let body = self
                    .t
                    .defines
                    .get(&name)
                    .ok_or(TmplError(format!("no define {name}")))?;
                let mut inner = Ctx {
                    t: self.t,
                    root: a[1].clone(),
                    vars: vec![],
                };
                let mut out = String::new();
                inner.nodes(body, &a[1], &mut out)?;
                Value::String(out)
            }
            "toYaml" => {
                want(1)?;
                Value::String(to_yaml(&a[0])?)
            }
            "nindent" | "indent" => {
                want(2)?;
                let n = num(&a[0])? as usize;
                let body = indent(n, &s(1)?);
                Value::String(if f == "nindent" {
                    format!("\n{body}")
                } else {
                    body
                })
            }
            "quote" => {
                want(1)?;
                Value::String(format!(
                    "{:?}",
                    if a[0].is_null() { String::new() } else { s(0)? }
                ))
            }
            "printf" => {
                let fmt = s(0)?;
                let mut out = String::new();
                let mut args = a[1..].iter();
                let mut chars = fmt.chars();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('s' | 'v' | 'd') => out.push_str(&print(
                            args.next().ok_or(TmplError("printf: too few".into()))?,
                        )?),
                        Some('%') => out.push('%'),
                        o => return err(format!("printf verb {o:?} not supported")),
                    }
                }
                Value::String(out)
            }
            "trunc" => {
                want(2)?;
                let n = num(&a[0])? as usize;
                Value::String(s(1)?.chars().take(n).collect())
            }
            "trimSuffix" => {
                want(2)?;
                let (suf, v) = (s(0)?, s(1)?);
                Value::String(v.strip_suffix(suf.as_str()).unwrap_or(&v).to_string())
            }
            "replace" => {
                want(3)?;
                Value::String(s(2)?.replace(&s(0)?, &s(1)?))
            }
            "default" => {
                want(2)?;
                if truthy(&a[1]) {
                    a[1].clone()
                } else {
                    a[0].clone()
                }
            }
            "contains" => {
                want(2)?;
                Value::Bool(s(1)?.contains(&s(0)?))
            }
            "join" => {
                want(2)?;
                let items = a[1]
                    .as_array()
                    .ok_or(TmplError("join needs a list".into()))?;
                Value::String(items.iter().map(print).collect::<R<Vec<_>>>()?.join(&s(0)?))
            }
            "has" => {
                want(2)?;
                Value::Bool(a[1].as_array().is_some_and(|l| l.contains(&a[0])))
            }
            "int" => {
                want(1)?;
                serde_json::json!(num(&a[0])?.trunc() as i64)
            }
            "len" => {
                want(1)?;
                serde_json::json!(match &a[0] {
                    Value::Array(l) => l.len(),
                    Value::Object(o) => o.len(),
                    Value::String(x) => x.len(),
                    v => return err(format!("len of {v}")),
                })
            }
            "eq" => {
                want(2)?;
                Value::Bool(match (&a[0], &a[1]) {
                    (Value::Number(_), Value::Number(_)) => num(&a[0])? == num(&a[1])?,
                    (x, y) => x == y,
                })
            }
            "ne" => {
                want(2)?;
                Value::Bool(a[0] != a[1])
            }
            "gt" => cmp(|x, y| x > y)?,
            "ge" => cmp(|x, y| x >= y)?,
            "lt" => cmp(|x, y| x < y)?,
            "le" => cmp(|x, y| x <= y)?,
            "and" => a
                .iter()
                .find(|v| !truthy(v))
                .or(a.last())
                .cloned()
                .unwrap_or(Value::Null),
            "or" => a
                .iter()
                .find(|v| truthy(v))
                .or(a.last())
                .cloned()
                .unwrap_or(Value::Null),
            "not" => {
                want(1)?;
                Value::Bool(!truthy(&a[0]))
            }
            "empty" => {
                want(1)?;
                Value::Bool(!truthy(&a[0]))
            }
            "fail" => return err(format!("fail: {}", s(0)?)),
            _ => {
                return err(format!(
                    "function {f} is not supported by the test renderer"
                ));
            }
        })
    }
}
