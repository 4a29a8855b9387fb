//! `portcullis explain`'s human output.

use std::fmt::Write;

use super::{Answer, Explanation, RuleView};

fn rule_line(r: &RuleView) -> String {
    let mut s = format!("{} {} rule {}", r.kind, r.route, r.rule);
    if r.match_index > 0 {
        let _ = write!(s, " match {}", r.match_index);
    }
    let _ = write!(s, " [{}]", r.matches);
    if !r.hostnames.is_empty() {
        let _ = write!(s, " hostnames {}", r.hostnames.join(","));
    }
    s
}

/// `404 NR: no listener matches the host`, `forwarded to ns/svc:80`, ...
pub fn answer_line(a: &Answer) -> String {
    let mut s = match (a.status, &a.flag) {
        (Some(st), Some(f)) => format!("{st} ({f}) "),
        (Some(st), None) => format!("{st} "),
        _ => String::new(),
    };
    s.push_str(&a.reason);
    if let Some(u) = &a.upstream {
        let _ = write!(s, " (sent upstream as {u})");
    }
    s
}

/// The explanation as text, one fact per line.
pub fn render(ex: &Explanation) -> String {
    let mut o = String::new();
    let r = &ex.request;
    let _ = write!(
        o,
        "request   {} {}://{}:{}{}",
        r.method, r.scheme, r.host, r.port, r.path
    );
    if let Some(q) = &r.query {
        let _ = write!(o, "?{q}");
    }
    o.push('\n');
    if let Some(sni) = &r.sni {
        let _ = writeln!(o, "sni       {sni}");
    }
    for (n, v) in &r.headers {
        let _ = writeln!(o, "header    {n}: {v}");
    }
    if let Some(p) = &ex.port {
        let _ = writeln!(o, "socket    {} ({}): {}", p.bind, p.protocol, p.reason);
    }
    for l in &ex.listeners {
        let mark = if l.chosen { "*" } else { " " };
        let host = l.hostname.as_deref().unwrap_or("(any hostname)");
        let m = if l.matches_host {
            "matches the host"
        } else {
            "does not match the host"
        };
        let _ = writeln!(o, "listener {mark}{} hostname {host}: {m}", l.name);
    }
    if let Some(why) = &ex.listener_reason {
        match &ex.listener {
            Some(l) => {
                let _ = writeln!(o, "          {l}: {why}");
            }
            None => {
                let _ = writeln!(o, "          {why}");
            }
        }
    }
    if let Some(w) = &ex.route {
        let _ = writeln!(o, "route     {}", rule_line(w));
    }
    for l in &ex.lost {
        let _ = writeln!(
            o,
            "lost      {}\n          why: {}",
            rule_line(&l.rule),
            l.reason
        );
    }
    for n in &ex.near_misses {
        let _ = writeln!(
            o,
            "no match  {}\n          why: {}",
            rule_line(&n.rule),
            n.reason
        );
    }
    if let Some(s) = &ex.security {
        let _ = write!(o, "policy    SecurityPolicy {}", s.policy);
        if !s.checks.is_empty() {
            let _ = write!(o, ": {}", s.checks.join(" → "));
        }
        if let Some(i) = &s.invalid {
            let _ = write!(o, " (invalid: {i})");
        }
        o.push('\n');
        if s.invalid.is_none() && !s.checks.is_empty() {
            o.push_str(
                "          the answer below assumes the request passes them (else 401/403)\n",
            );
        }
    }
    for f in &ex.filters {
        let _ = writeln!(o, "filter    {f}");
    }
    for b in &ex.backends {
        let _ = write!(
            o,
            "backend   {} weight {} ({}%)",
            b.name, b.weight, b.percent
        );
        if !b.endpoints.is_empty() {
            let _ = write!(o, " endpoints {}", b.endpoints.join(","));
        }
        o.push('\n');
        for f in &b.filters {
            let _ = writeln!(o, "          filter {f}");
        }
        if ex.backends.len() > 1 {
            let _ = writeln!(o, "          → {}", answer_line(&b.answer));
        }
    }
    let _ = writeln!(o, "answer    {}", answer_line(&ex.answer));
    if let Some(l) = &ex.answer.location {
        let _ = writeln!(o, "          location: {l}");
    }
    o
}
