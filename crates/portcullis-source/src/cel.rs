//! `x-kubernetes-validations` rules, evaluated with the `cel` crate.
//!
//! Kubernetes evaluates each rule with `self` bound to the value of the schema
//! node the rule hangs from, after defaulting. Object property names that are
//! CEL keywords or contain `.`, `-`, `/` or `__` are escaped (`namespace` is
//! `__namespace__`), map keys are not. Kubernetes adds functions to standard
//! CEL; the ones the Gateway API CRDs use and the `cel` crate lacks are
//! registered here: `isIP`, the string extension (`split`, `substring`, ...)
//! and `duration` (when the crate is built without its `chrono` feature,
//! durations are compared as integer nanoseconds, which is all the rules do).
//!
//! A rule that the interpreter cannot compile, or cannot evaluate for a reason
//! other than the data (an unknown function, an unsupported overload), does
//! not reject objects: it is logged once and treated as passing. A rule that
//! reads a field the object does not have (`no such key`) fails, as it does in
//! Kubernetes.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};

use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program};
use serde_json::Value as Json;

use crate::schema::Schema;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    if let Err(e) = env.add_extension(cel::extensions::strings) {
        tracing::warn!("cannot add the CEL strings extension: {e}");
    }
    Arc::new(env)
});

thread_local! {
    static ROOT: Context<'static, 'static> = root_context();
}

fn root_context() -> Context<'static, 'static> {
    let mut ctx = Context::with_env(Arc::clone(&ENV));
    // An overload conflict means the environment already has the function.
    let _ = ctx.add_function("isIP", |s: Arc<String>| s.parse::<IpAddr>().is_ok());
    let _ = ctx.add_function("isCIDR", |s: Arc<String>| is_cidr(&s));
    let _ = ctx.add_function(
        "duration",
        |s: Arc<String>| -> Result<cel::Value, ExecutionError> {
            parse_go_duration(&s).map(cel::Value::Int).ok_or_else(|| {
                ExecutionError::function_error("duration", format!("invalid duration {s:?}"))
            })
        },
    );
    ctx
}

/// Kubernetes' `isCIDR`: an address, `/`, and a prefix length that fits it.
fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let max = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => 32,
        Ok(IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    !len.is_empty()
        && len.bytes().all(|b| b.is_ascii_digit())
        && len.len() <= 3
        && len.parse::<u8>().is_ok_and(|l| l <= max)
}

/// Parse a Go duration (`1h30m`, `500ms`, `0s`, `-1.5h`) into nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num * scale;
    }
    let n = total.round() as i64;
    Some(if neg { -n } else { n })
}

/// One `x-kubernetes-validations` entry, compiled.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The CEL expression.
    pub(crate) rule: String,
    message: Option<String>,
    message_expression: Option<Result<Program, String>>,
    /// `fieldPath`: where to report, relative to the node of the rule.
    pub(crate) field_path: Option<String>,
    program: Result<Program, String>,
    /// Whether the rule reads `oldSelf` (a transition rule: update only).
    pub(crate) transition: bool,
}

impl Rule {
    /// Compile a rule from its CRD entry.
    pub(crate) fn parse(v: &Json) -> Result<Rule, String> {
        let rule = v
            .get("rule")
            .and_then(Json::as_str)
            .ok_or("x-kubernetes-validations entry without rule")?;
        let compile = |src: &str| ENV.compile(src).map_err(|e| e.to_string());
        let program = compile(rule);
        let transition = match &program {
            Ok(p) => p.references().has_variable("oldSelf"),
            Err(_) => rule.contains("oldSelf"),
        };
        Ok(Rule {
            rule: rule.to_string(),
            message: v.get("message").and_then(Json::as_str).map(str::to_string),
            message_expression: v
                .get("messageExpression")
                .and_then(Json::as_str)
                .map(compile),
            field_path: v
                .get("fieldPath")
                .and_then(Json::as_str)
                .map(str::to_string),
            program,
            transition,
        })
    }

    /// Whether the rule cannot be compiled by the interpreter, and why.
    #[cfg(test)]
    pub(crate) fn compile_error(&self) -> Option<&str> {
        self.program.as_ref().err().map(String::as_str)
    }

    fn message(&self, this: &cel::Value, old: Option<&cel::Value>) -> String {
        if let Some(Ok(p)) = &self.message_expression
            && let Ok(cel::Value::String(s)) = run(p, this, old)
            && !s.trim().is_empty()
        {
            return s.to_string();
        }
        match &self.message {
            Some(m) => m.clone(),
            None => format!("failed rule: {}", self.rule),
        }
    }

    /// Evaluate the rule; `Some(message)` when it fails.
    pub(crate) fn check(&self, this: &cel::Value, old: Option<&cel::Value>) -> Option<String> {
        let program = match &self.program {
            Ok(p) => p,
            Err(e) => {
                unsupported(&self.rule, &format!("does not compile: {e}"));
                return None;
            }
        };
        match run(program, this, old) {
            Ok(cel::Value::Bool(true)) => None,
            Ok(cel::Value::Bool(false)) => Some(self.message(this, old)),
            Ok(other) => {
                unsupported(
                    &self.rule,
                    &format!("evaluates to {other:?}, not a boolean"),
                );
                None
            }
            Err(ExecutionError::NoSuchKey(k)) => Some(format!(
                "{} (the rule reads field {k:?}, which is not set)",
                self.message(this, old)
            )),
            Err(e) => {
                unsupported(&self.rule, &format!("cannot be evaluated: {e}"));
                None
            }
        }
    }
}

fn run(
    program: &Program,
    this: &cel::Value,
    old: Option<&cel::Value>,
) -> Result<cel::Value, ExecutionError> {
    ROOT.with(|root| {
        let mut ctx = root.new_inner_scope();
        ctx.add_variable_from_value("self", this.clone());
        if let Some(o) = old {
            ctx.add_variable_from_value("oldSelf", o.clone());
        }
        program.execute(&ctx)
    })
}

static UNSUPPORTED: LazyLock<Mutex<BTreeSet<(String, String)>>> = LazyLock::new(Default::default);

fn unsupported(rule: &str, why: &str) {
    let mut set = UNSUPPORTED.lock().unwrap_or_else(|e| e.into_inner());
    if set.insert((rule.to_string(), why.to_string())) {
        tracing::warn!(rule, "CEL validation rule {why}; treating it as passing");
    }
}

/// Every rule that was treated as passing because the interpreter could not
/// compile or evaluate it, with the reason, so far in this process.
pub fn unsupported_rules() -> Vec<(String, String)> {
    UNSUPPORTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Escape an object property name the way Kubernetes exposes it to CEL.
pub(crate) fn escape(name: &str) -> String {
    if RESERVED.contains(&name) {
        return format!("__{name}__");
    }
    name.replace("__", "__underscores__")
        .replace('.', "__dot__")
        .replace('-', "__dash__")
        .replace('/', "__slash__")
}

/// Convert a JSON value to CEL, escaping property names of schema objects.
pub(crate) fn to_cel(v: &Json, schema: &Schema) -> cel::Value {
    convert(v, Some(schema))
}

fn convert(v: &Json, schema: Option<&Schema>) -> cel::Value {
    match v {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => {
            let item_schema = schema.and_then(|s| s.items.as_deref());
            cel::Value::List(Arc::new(
                items.iter().map(|i| convert(i, item_schema)).collect(),
            ))
        }
        Json::Object(obj) => {
            let mut map = HashMap::with_capacity(obj.len());
            for (k, val) in obj {
                let (key, child) = match schema {
                    Some(s) if s.properties.contains_key(k) => (escape(k), s.properties.get(k)),
                    Some(s) if s.additional.is_some() => (k.clone(), s.additional.as_deref()),
                    _ => (k.clone(), None),
                };
                map.insert(Key::String(Arc::new(key)), convert(val, child));
            }
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(src: &str) -> Rule {
        Rule::parse(&json!({"rule": src, "message": "nope"})).unwrap()
    }

    fn eval(src: &str, this: Json) -> Option<String> {
        let r = rule(src);
        assert!(
            r.compile_error().is_none(),
            "{src}: {:?}",
            r.compile_error()
        );
        r.check(&convert(&this, None), None)
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0s"), Some(0));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("1h30m"), Some(5400 * 1_000_000_000));
        assert_eq!(parse_go_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("-2m"), Some(-120_000_000_000));
        assert_eq!(parse_go_duration("10x"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn kubernetes_functions() {
        assert_eq!(
            eval("self.all(h, !isIP(h))", json!(["a.com", "b.org"])),
            None
        );
        assert_eq!(
            eval("self.all(h, !isIP(h))", json!(["a.com", "10.0.0.1"])).as_deref(),
            Some("nope")
        );
        assert_eq!(
            eval("self.all(h, !isIP(h))", json!(["::1"])).as_deref(),
            Some("nope")
        );
        assert_eq!(
            eval(
                r#"self.all(key, key.split("/")[0].size() < 4)"#,
                json!({"ab/c": "x"})
            ),
            None
        );
        assert!(
            eval(
                r#"self.all(key, key.split("/")[0].size() < 4)"#,
                json!({"abcd/c": "x"})
            )
            .is_some()
        );
        assert_eq!(eval("self.substring(2) == 'foo'", json!("*.foo")), None);
        let d = "!(duration(self.request) != duration('0s') && duration(self.backendRequest) > duration(self.request))";
        assert_eq!(
            eval(d, json!({"request": "10s", "backendRequest": "2s"})),
            None
        );
        assert!(eval(d, json!({"request": "1s", "backendRequest": "1500ms"})).is_some());
        assert_eq!(
            eval(d, json!({"request": "0s", "backendRequest": "1h"})),
            None
        );
        assert_eq!(
            eval(
                r#"self.matches(r"""^(?i)\.?[a-z_][a-z_0-9]*$""")"#,
                json!("Foo_1")
            ),
            None
        );
    }

    #[test]
    fn missing_fields_fail_like_kubernetes() {
        let m = eval(
            "self.mode == 'Terminate' ? size(self.certificateRefs) > 0 : true",
            json!({"mode": "Terminate"}),
        );
        assert_eq!(
            m.as_deref(),
            Some("nope (the rule reads field \"certificateRefs\", which is not set)")
        );
        // `||` absorbs an error when the other side is true, as in cel-go.
        let ok = eval("size(self.a) > 0 || size(self.b) > 0", json!({"b": [1]}));
        assert_eq!(ok, None);
    }

    #[test]
    fn property_names_are_escaped() {
        assert_eq!(escape("namespace"), "__namespace__");
        assert_eq!(
            escape("a.b-c/d__e"),
            "a__dot__b__dash__c__slash__d__underscores__e"
        );
        let schema = Schema::parse(&json!({
            "type": "object",
            "properties": {"namespace": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}
        }))
        .unwrap();
        let v = to_cel(
            &json!({"namespace": "ns", "labels": {"namespace": "x"}}),
            &schema,
        );
        let r = rule("self.__namespace__ == 'ns' && self.labels['namespace'] == 'x'");
        assert_eq!(r.check(&v, None), None);
    }

    #[test]
    fn transition_rules_see_old_self() {
        let r = rule("self == oldSelf");
        assert!(r.transition);
        let a = convert(&json!("a"), None);
        let b = convert(&json!("b"), None);
        assert_eq!(r.check(&a, Some(&a)), None);
        assert_eq!(r.check(&b, Some(&a)).as_deref(), Some("nope"));
    }

    #[test]
    fn message_expression_and_default_message() {
        let r =
            Rule::parse(&json!({"rule": "self > 1", "messageExpression": "'got ' + string(self)"}))
                .unwrap();
        assert_eq!(r.check(&cel::Value::Int(0), None).as_deref(), Some("got 0"));
        let r = Rule::parse(&json!({"rule": "self > 1"})).unwrap();
        assert_eq!(
            r.check(&cel::Value::Int(0), None).as_deref(),
            Some("failed rule: self > 1")
        );
    }
}
