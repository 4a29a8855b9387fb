//! `portcullis validate`: what a deploy of these files would leave unserved.
//!
//! The files are read as `portcullis run` reads them (schema, CEL, unknown
//! fields per `--field-validation`), then translated; every problem a user
//! must fix is one line, `file:line: Kind namespace/name: where: what`:
//!
//! - an invalid object (its field and the rule it breaks);
//! - a condition that leaves configuration unserved: `Accepted=False`,
//!   `ResolvedRefs=False`, `PartiallyInvalid=True`, `Conflicted=True` (on an
//!   object, a listener, a route's parentRef or a policy's ancestor), a
//!   GatewayClass of ours that is not accepted;
//! - what translation says nothing about because nothing serves it: a Gateway
//!   whose GatewayClass is missing, not ours or not accepted, a route or
//!   ListenerSet whose parent Gateway or ListenerSet does not exist or is not
//!   served.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use portcullis_source::ingress::ServeOptions;
use portcullis_source::{FieldValidation, FileSource};
use portcullis_store::status::{
    Condition, ParentRef, ParentRefView, ParentStatus, Status, Statuses,
};
use portcullis_store::{GATEWAY_GROUP, Kind, ObjectKey, ObjectRef, Snapshot};
use serde::Serialize;

use crate::cli::ValidateFormat;

/// One problem to fix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The file (absent for an object with no known location).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The line (1-based; 0 when unknown).
    pub line: usize,
    /// `schema` (the object is invalid and not served) or `translation`
    /// (the object is valid but part of it is not served).
    pub source: &'static str,
    /// The object's kind, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The object's namespace (empty for cluster-scoped kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The field at fault (`source: schema`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The part of the status: `listener "http"`, `parentRef infra/gw`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The condition type (`source: translation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The condition's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The condition's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// `file:line: Kind ns/name: where: what`.
    pub fn line(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.file {
            s.push_str(&f.display().to_string());
            if self.line > 0 {
                s.push_str(&format!(":{}", self.line));
            }
            s.push_str(": ");
        }
        if let Some(k) = &self.kind {
            s.push_str(k);
            s.push(' ');
        }
        match (&self.namespace, &self.name) {
            (Some(ns), Some(n)) if !ns.is_empty() => s.push_str(&format!("{ns}/{n}: ")),
            (_, Some(n)) => s.push_str(&format!("{n}: ")),
            _ if self.kind.is_some() => {
                s.pop();
                s.push_str(": ");
            }
            _ => {}
        }
        for part in [&self.field, &self.scope].into_iter().flatten() {
            s.push_str(part);
            s.push_str(": ");
        }
        if let (Some(c), Some(st)) = (&self.condition, &self.status) {
            s.push_str(&format!("{c}={st}"));
            if let Some(r) = &self.reason {
                s.push_str(&format!(" ({r})"));
            }
            s.push_str(": ");
        }
        // One line per problem, whatever the message holds.
        s.push_str(
            &self
                .message
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
        s
    }
}

/// The outcome of validating a path.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// No problem at all.
    pub valid: bool,
    /// Objects read and valid.
    pub objects: usize,
    /// Every problem, by file and line.
    pub problems: Vec<Problem>,
    /// Warnings (ignored namespaces; with `--field-validation=Warn`, dropped
    /// fields and skipped kinds).
    pub warnings: Vec<String>,
}

/// Read, translate and collect every problem under `path`.
pub fn check(path: &Path, fields: FieldValidation, serve: &ServeOptions) -> Report {
    let mut source = FileSource::new(path).with_field_validation(fields);
    let reload = source.reload();
    let options = portcullis_translate::Options::default();
    let derived = portcullis_source::ingress::derive(&reload.snapshot, serve);
    let mut out = portcullis_translate::translate(&portcullis_translate::Input {
        snapshot: &derived.snapshot,
        options: &options,
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    });
    crate::ingress::add_statuses(&derived, &out.config, &mut out.statuses, serve);
    let problems = problems(
        &reload.errors,
        &derived.snapshot,
        &out.statuses,
        &source,
        &options,
    );
    Report {
        valid: problems.is_empty(),
        objects: reload.snapshot.len(),
        problems,
        warnings: reload.warnings,
    }
}

/// Every problem of a translated snapshot, sorted by file and line: the
/// source's errors (invalid objects), then the conditions and unattached
/// objects that leave configuration unserved, located by `source`.
/// `portcullis validate` and the dashboard (`/ui`) show the same list.
pub fn problems(
    errors: &[portcullis_source::SourceError],
    snapshot: &Snapshot,
    statuses: &Statuses,
    source: &FileSource,
    options: &portcullis_translate::Options,
) -> Vec<Problem> {
    let mut problems: Vec<Problem> = errors
        .iter()
        .map(|e| Problem {
            file: Some(e.file.clone()),
            line: e.line,
            source: "schema",
            kind: e.kind.clone(),
            namespace: e.object.as_ref().map(|k| k.namespace.clone()),
            name: e.object.as_ref().map(|k| k.name.clone()),
            field: e.field.clone(),
            scope: None,
            condition: None,
            status: None,
            reason: None,
            message: e.message.clone(),
        })
        .collect();
    // Objects derived from an Ingress are located at the Ingress.
    let at = |oref: &ObjectRef| {
        source
            .location(oref.kind, &oref.key)
            .or_else(|| {
                let ingress = crate::ingress::origin(snapshot, oref)?;
                source.location(Kind::Ingress, &ingress)
            })
            .map(|(f, l)| (f.to_path_buf(), l))
    };
    for (oref, status) in statuses {
        for (scope, c) in unserved(status) {
            problems.push(condition_problem(oref, at(oref), scope, c));
        }
    }
    for (oref, scope, message) in unattached(snapshot, statuses, options) {
        problems.push(Problem {
            scope,
            message,
            ..object_problem(&oref, at(&oref))
        });
    }
    problems.sort();
    problems.dedup();
    problems
}

/// A translation problem about an object, at its location, to be filled in.
fn object_problem(oref: &ObjectRef, at: Option<(PathBuf, usize)>) -> Problem {
    let (file, line) = match at {
        Some((f, l)) => (Some(f), l),
        None => (None, 0),
    };
    Problem {
        file,
        line,
        source: "translation",
        kind: Some(oref.kind.as_str().to_string()),
        namespace: Some(oref.key.namespace.clone()),
        name: Some(oref.key.name.clone()),
        field: None,
        scope: None,
        condition: None,
        status: None,
        reason: None,
        message: String::new(),
    }
}

/// A condition that leaves something unserved, as a problem.
fn condition_problem(
    oref: &ObjectRef,
    at: Option<(PathBuf, usize)>,
    scope: Option<String>,
    c: &Condition,
) -> Problem {
    Problem {
        scope,
        condition: Some(c.type_.clone()),
        status: Some(c.status.clone()),
        reason: Some(c.reason.clone()),
        message: c.message.clone(),
        ..object_problem(oref, at)
    }
}

/// Whether a condition says that something is not served.
fn is_unserved(c: &Condition) -> bool {
    match c.type_.as_str() {
        "Accepted" | "ResolvedRefs" => c.status == "False",
        "PartiallyInvalid" | "Conflicted" => c.status == "True",
        _ => false,
    }
}

/// `parentRef infra/gw (section http, port 80)`.
fn parent_scope(what: &str, r: &ParentRef) -> String {
    let kind = r.kind.as_deref().unwrap_or("Gateway");
    let mut s = format!("{what} {kind} ");
    if let Some(ns) = &r.namespace {
        s.push_str(&format!("{ns}/"));
    }
    s.push_str(&r.name);
    let mut extra = vec![];
    if let Some(sec) = &r.section_name {
        extra.push(format!("section {sec}"));
    }
    if let Some(p) = r.port {
        extra.push(format!("port {p}"));
    }
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join(", ")));
    }
    s
}

/// The conditions of one status that leave something unserved, each with
/// where in the status it is. A listener's `Accepted=False` that only
/// repeats its `Conflicted=True` is left out.
fn unserved(status: &Status) -> Vec<(Option<String>, &Condition)> {
    match status {
        Status::GatewayClass(s) => pick(|| None, &s.conditions),
        Status::Ingress(s) => pick(|| None, &s.conditions),
        Status::Gateway(s) => {
            let mut v = pick(|| None, &s.conditions);
            for l in &s.listeners {
                v.extend(pick(
                    || Some(format!("listener {:?}", l.name)),
                    &l.conditions,
                ));
            }
            v
        }
        Status::Route(s) => s
            .parents
            .iter()
            .flat_map(|p| {
                pick(
                    || Some(parent_scope("parentRef", &p.parent_ref)),
                    &p.conditions,
                )
            })
            .collect(),
        Status::Policy { ancestors } => ancestors
            .iter()
            .flat_map(|a| {
                pick(
                    || Some(parent_scope("ancestor", &a.ancestor_ref)),
                    &a.conditions,
                )
            })
            .collect(),
    }
}

/// The unserved conditions of one condition list, with its scope (made only
/// when there is one: this runs over every status after every change).
fn pick(
    scope: impl Fn() -> Option<String>,
    conds: &[Condition],
) -> Vec<(Option<String>, &Condition)> {
    let conflicted = conds
        .iter()
        .find(|c| c.type_ == "Conflicted" && c.status == "True")
        .map(|c| c.reason.as_str());
    let unserved = |c: &&Condition| {
        is_unserved(c) && !(c.type_ == "Accepted" && Some(c.reason.as_str()) == conflicted)
    };
    if !conds.iter().any(|c| unserved(&c)) {
        return Vec::new();
    }
    let scope = scope();
    conds
        .iter()
        .filter(unserved)
        .map(|c| (scope.clone(), c))
        .collect()
}

/// Objects that translation is silent about because nothing serves them:
/// `(object, scope, message)`.
fn unattached(
    snapshot: &Snapshot,
    statuses: &Statuses,
    options: &portcullis_translate::Options,
) -> Vec<(ObjectRef, Option<String>, String)> {
    let mut out = vec![];
    let has_status = |kind: Kind, key: &ObjectKey| {
        statuses.contains_key(&ObjectRef {
            kind,
            key: key.clone(),
        })
    };
    // GatewayClasses by name: controllerName, and whether ours is accepted.
    let classes: BTreeMap<String, String> = snapshot
        .gateway_classes
        .iter()
        .map(|(k, gc)| (k.name.clone(), gc.spec.controller_name.clone()))
        .collect();
    let served_gateways: BTreeSet<ObjectKey> = snapshot
        .gateways
        .keys()
        .filter(|k| has_status(Kind::Gateway, k))
        .cloned()
        .collect();
    for (key, gw) in &snapshot.gateways {
        if served_gateways.contains(key) {
            continue;
        }
        let class = &gw.spec.gateway_class_name;
        let message = match classes.get(class) {
            None => format!(
                "gatewayClassName {class:?}: no GatewayClass {class:?} exists, so this Gateway is not served"
            ),
            Some(c) if *c != options.controller_name => format!(
                "gatewayClassName {class:?}: GatewayClass {class:?} belongs to controller {c:?}, not {:?}, so this Gateway is not served",
                options.controller_name
            ),
            Some(_) => format!(
                "gatewayClassName {class:?}: GatewayClass {class:?} is not accepted, so this Gateway is not served"
            ),
        };
        out.push((
            ObjectRef {
                kind: Kind::Gateway,
                key: key.clone(),
            },
            None,
            message,
        ));
    }
    let served_sets: BTreeSet<ObjectKey> = snapshot
        .listener_sets
        .keys()
        .filter(|k| has_status(Kind::ListenerSet, k))
        .cloned()
        .collect();
    for key in snapshot.listener_sets.keys() {
        if served_sets.contains(key) {
            continue;
        }
        let json = snapshot
            .get(Kind::ListenerSet, key)
            .map(|o| o.to_json())
            .unwrap_or_default();
        let pr = &json["spec"]["parentRef"];
        let ns = pr["namespace"].as_str().unwrap_or(&key.namespace);
        let name = pr["name"].as_str().unwrap_or_default();
        out.push((
            ObjectRef {
                kind: Kind::ListenerSet,
                key: key.clone(),
            },
            Some(format!("parentRef Gateway {ns}/{name}")),
            missing_gateway(snapshot, &served_gateways, &ObjectKey::new(ns, name)),
        ));
    }
    // Routes: each parentRef to a Gateway or ListenerSet with no status entry.
    // This runs after every change, over every route: routes and their
    // statuses are walked side by side (both sorted by key) and parentRefs are
    // compared where they are; only an unreported one is copied.
    let mut unreported: Vec<(Kind, &ObjectKey, ParentRef)> = Vec::new();
    macro_rules! unreported_parents {
        ($kind:expr, $routes:expr) => {{
            let kind = $kind;
            let start = ObjectRef {
                kind,
                key: ObjectKey::new("", ""),
            };
            let mut reported = statuses
                .range(start..)
                .take_while(|(o, _)| o.kind == kind)
                .peekable();
            for (key, route) in $routes {
                while reported.next_if(|(o, _)| o.key < *key).is_some() {}
                let parents: &[ParentStatus] = match reported.next_if(|(o, _)| o.key == *key) {
                    Some((_, Status::Route(r))) => &r.parents,
                    _ => &[],
                };
                for p in route.spec.parent_refs.iter().flatten() {
                    let r = ParentRefView {
                        group: p.group.as_deref(),
                        kind: p.kind.as_deref(),
                        namespace: p.namespace.as_deref(),
                        name: &p.name,
                        section_name: p.section_name.as_deref(),
                        port: p.port,
                    };
                    if r.group.unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                        && !parents
                            .iter()
                            .any(|s| r.same_defaulted(&s.parent_ref.view()))
                    {
                        unreported.push((kind, key, r.to_owned()));
                    }
                }
            }
        }};
    }
    unreported_parents!(Kind::HTTPRoute, &snapshot.http_routes);
    unreported_parents!(Kind::GRPCRoute, &snapshot.grpc_routes);
    unreported_parents!(Kind::TLSRoute, &snapshot.tls_routes);
    unreported_parents!(Kind::TCPRoute, &snapshot.tcp_routes);
    unreported_parents!(Kind::UDPRoute, &snapshot.udp_routes);
    for (kind, key, r) in unreported {
        let r = r.defaulted();
        let target = ObjectKey::new(r.namespace.as_deref().unwrap_or(&key.namespace), &r.name);
        let message = match r.kind.as_deref() {
            Some("Gateway") => missing_gateway(snapshot, &served_gateways, &target),
            Some("ListenerSet") if !snapshot.listener_sets.contains_key(&target) => {
                format!("ListenerSet {target} does not exist, so this parentRef is not served")
            }
            Some("ListenerSet") => format!(
                "ListenerSet {target} is not attached to a served Gateway, so this parentRef is not served"
            ),
            _ => continue,
        };
        let mut shown = r.clone();
        shown.namespace.get_or_insert_with(|| key.namespace.clone());
        out.push((
            ObjectRef {
                kind,
                key: key.clone(),
            },
            Some(parent_scope("parentRef", &shown)),
            message,
        ));
    }
    out
}

fn missing_gateway(
    snapshot: &Snapshot,
    served: &BTreeSet<ObjectKey>,
    target: &ObjectKey,
) -> String {
    if !snapshot.gateways.contains_key(target) {
        format!("Gateway {target} does not exist, so this is not served")
    } else if !served.contains(target) {
        format!("Gateway {target} is not served (see its own problem), so neither is this")
    } else {
        format!("Gateway {target} does not take this reference")
    }
}

/// `portcullis validate`: print the report; exit 1 on any problem.
pub fn run(
    path: &Path,
    format: ValidateFormat,
    fields: FieldValidation,
    serve: &ServeOptions,
) -> anyhow::Result<ExitCode> {
    let report = check(path, fields, serve);
    match format {
        ValidateFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ValidateFormat::Text => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", text(path, &report));
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The text report: problems grouped by file (a blank line between files),
/// one line each, then a summary line.
pub fn text(path: &Path, report: &Report) -> String {
    let mut s = String::new();
    let mut last_file: Option<&Option<PathBuf>> = None;
    for p in &report.problems {
        if last_file.is_some_and(|f| f != &p.file) {
            s.push('\n');
        }
        last_file = Some(&p.file);
        s.push_str(&p.line());
        s.push('\n');
    }
    if report.valid {
        s.push_str(&format!(
            "{}: {} objects, no problems: everything is valid and would be served\n",
            path.display(),
            report.objects
        ));
        return s;
    }
    let files: BTreeSet<&Option<PathBuf>> = report.problems.iter().map(|p| &p.file).collect();
    let invalid: BTreeSet<(Option<&String>, Option<&String>, Option<&String>)> = report
        .problems
        .iter()
        .filter(|p| p.source == "schema")
        .map(|p| (p.kind.as_ref(), p.namespace.as_ref(), p.name.as_ref()))
        .collect();
    let unserved = report
        .problems
        .iter()
        .filter(|p| p.source == "translation")
        .count();
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    s.push_str(&format!(
        "\n{}: {} in {} ({}, {} not served); {} loaded\n",
        path.display(),
        plural(report.problems.len(), "problem", "problems"),
        plural(files.len(), "file", "files"),
        plural(invalid.len(), "invalid object", "invalid objects"),
        unserved,
        plural(report.objects, "object", "objects"),
    ));
    s
}
