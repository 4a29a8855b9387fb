//! The conversion report: one line per annotation of every Ingress, and notes
//! on what the user must do by hand.

use std::fmt::Write as _;

/// How one annotation of one Ingress fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Same behaviour.
    Converted,
    /// Converted, with a difference.
    Differs,
    /// Not converted.
    Unsupported,
    /// Not a known ingress-nginx annotation: not converted.
    Unknown,
}

impl Outcome {
    /// The word used in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Converted => "converted",
            Outcome::Differs => "differs",
            Outcome::Unsupported => "unsupported",
            Outcome::Unknown => "unknown",
        }
    }
}

impl From<crate::table::Support> for Outcome {
    fn from(s: crate::table::Support) -> Self {
        match s {
            crate::table::Support::Converted => Outcome::Converted,
            crate::table::Support::Differs => Outcome::Differs,
            crate::table::Support::Unsupported => Outcome::Unsupported,
        }
    }
}

/// One annotation of one Ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The full annotation name.
    pub annotation: String,
    /// Its value.
    pub value: String,
    /// How it fared.
    pub outcome: Outcome,
    /// What it became, or why not.
    pub result: String,
    /// The difference, when there is one.
    pub difference: String,
}

/// The report of one Ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngressReport {
    /// `namespace/name`.
    pub ingress: String,
    /// The file it came from.
    pub file: String,
    /// One entry per annotation, sorted by name.
    pub entries: Vec<Entry>,
    /// Problems and actions that belong to no annotation.
    pub notes: Vec<String>,
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Per Ingress, sorted.
    pub ingresses: Vec<IngressReport>,
    /// Notes about the whole input.
    pub notes: Vec<String>,
}

impl Report {
    /// How many entries have this outcome.
    pub fn count(&self, o: Outcome) -> usize {
        self.ingresses
            .iter()
            .flat_map(|i| &i.entries)
            .filter(|e| e.outcome == o)
            .count()
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for i in &self.ingresses {
            let _ = writeln!(s, "Ingress {} ({}):", i.ingress, i.file);
            if i.entries.is_empty() && i.notes.is_empty() {
                s.push_str("  no annotations\n");
            }
            for e in &i.entries {
                let _ = writeln!(
                    s,
                    "  {:<11} {}: {:?}\n              → {}",
                    e.outcome.as_str(),
                    e.annotation,
                    e.value,
                    e.result
                );
                if !e.difference.is_empty() {
                    let _ = writeln!(s, "              difference: {}", e.difference);
                }
            }
            for n in &i.notes {
                let _ = writeln!(s, "  note: {n}");
            }
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "{} Ingresses; annotations: {} converted, {} converted with a difference, {} unsupported, {} unknown",
            self.ingresses.len(),
            self.count(Outcome::Converted),
            self.count(Outcome::Differs),
            self.count(Outcome::Unsupported),
            self.count(Outcome::Unknown),
        );
        s
    }
}
