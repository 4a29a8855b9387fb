//! `portcullis status` and the status document shared with the admin API.

use std::path::Path;
use std::process::ExitCode;

use portcullis_store::status::Statuses;
use portcullis_store::{ObjectRef, Snapshot};
use serde_json::{Value, json};

use crate::cli::Format;

/// Every Gateway API object with its status, as `[{apiVersion, kind, metadata, status}]`.
pub fn status_document(snapshot: &Snapshot, statuses: &Statuses) -> Value {
    let mut out = vec![];
    for (kind, meta) in snapshot.metas() {
        if !kind.has_status() {
            continue;
        }
        let key = portcullis_store::ObjectKey::of(meta);
        let status = statuses
            .get(&ObjectRef { kind, key })
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .unwrap_or_else(|| json!({}));
        out.push(json!({
            "apiVersion": kind.api_version(),
            "kind": kind.as_str(),
            "metadata": meta,
            "status": status,
        }));
    }
    Value::Array(out)
}

/// `portcullis status`: translate offline and print.
pub fn status(
    path: &Path,
    format: Format,
    pool: Option<ipnet::IpNet>,
    fields: portcullis_source::FieldValidation,
    serve: &portcullis_source::ingress::ServeOptions,
) -> anyhow::Result<ExitCode> {
    let mut source = portcullis_source::FileSource::new(path).with_field_validation(fields);
    let reload = source.reload();
    for w in &reload.warnings {
        eprintln!("warning: {w}");
    }
    for e in &reload.errors {
        eprintln!("error: {e}");
    }
    let options = portcullis_translate::Options {
        address_pool: pool,
        ..Default::default()
    };
    let derived = portcullis_source::ingress::derive(&reload.snapshot, serve);
    let input = portcullis_translate::Input {
        snapshot: &derived.snapshot,
        options: &options,
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    };
    let mut out = portcullis_translate::translate(&input);
    crate::ingress::add_statuses(&derived, &out.config, &mut out.statuses, serve);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    portcullis_store::status::carry_transition_times(&mut out.statuses, &Default::default(), &now);
    let doc = status_document(&derived.snapshot, &out.statuses);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&doc)?),
        Format::Yaml => print!("{}", serde_saphyr::to_string(&doc)?),
        Format::Table => print!("{}", table(&doc)),
    }
    Ok(if reload.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One line per object (and per route parent): kind, name, the key conditions and the first problem.
pub fn table(doc: &Value) -> String {
    let mut rows = vec![[
        "KIND".to_string(),
        "NAMESPACE/NAME".into(),
        "PARENT".into(),
        "ACCEPTED".into(),
        "READY".into(),
        "DETAIL".into(),
    ]];
    for o in doc.as_array().into_iter().flatten() {
        let kind = o["kind"].as_str().unwrap_or_default().to_string();
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = o["metadata"]["name"].as_str().unwrap_or_default();
        let id = if ns.is_empty() {
            name.to_string()
        } else {
            format!("{ns}/{name}")
        };
        let summarize = |conds: &Value, ready_type: &str| -> (String, String, String) {
            let get = |t: &str| {
                conds
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == t)
            };
            let show = |c: Option<&Value>| {
                c.map(|c| c["status"].as_str().unwrap_or("?").to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let problem = conds
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| {
                    (c["status"] == "False" && c["type"] != "Conflicted")
                        || (c["status"] == "True"
                            && (c["type"] == "Conflicted" || c["type"] == "PartiallyInvalid"))
                })
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            (show(get("Accepted")), show(get(ready_type)), problem)
        };
        // Routes: one row per parent; policies: one row per ancestor.
        let entries = o["status"]["parents"]
            .as_array()
            .map(|p| (p, "parentRef"))
            .or_else(|| {
                o["status"]["ancestors"]
                    .as_array()
                    .map(|a| (a, "ancestorRef"))
            });
        if let Some((parents, ref_key)) = entries {
            for p in parents {
                let (a, r, mut d) = summarize(&p["conditions"], "ResolvedRefs");
                if d.is_empty()
                    && let Some(c) = p["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|c| c["type"] == "Overridden" && c["status"] == "True")
                {
                    d = format!("Overridden: {}", c["message"].as_str().unwrap_or(""));
                }
                let pr = &p[ref_key];
                let mut parent = pr["name"].as_str().unwrap_or_default().to_string();
                if let Some(s) = pr["sectionName"].as_str() {
                    parent = format!("{parent}/{s}");
                }
                rows.push([kind.clone(), id.clone(), parent, a, r, d]);
            }
            continue;
        }
        let (a, r, d) = summarize(&o["status"]["conditions"], "Programmed");
        rows.push([kind, id, "-".into(), a, r, d]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            s.push_str(&format!("{:w$}  ", r[i], w = w));
        }
        s.push_str(&r[5]);
        s.push('\n');
    }
    s
}
