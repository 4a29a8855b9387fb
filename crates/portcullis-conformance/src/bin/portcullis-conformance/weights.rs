//! upstream `weight` checks, shared by the HTTP, gRPC, TCP and UDP weighted
//! routing tests: a backend of weight 0 receives no request at all, every
//! other backend receives some, each share is within a tolerance of its
//! weight, and no other backend answers.

use std::collections::BTreeMap;

/// Share tolerance of upstream's weighted tests (5 points).
pub const TOLERANCE: f64 = 0.05;

/// The backend of a pod name `<backend>-<replicaset hash>-<pod hash>`.
pub fn backend_of(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() < 3 {
        return pod.to_string();
    }
    parts[..parts.len() - 2].join("-")
}

/// Check the requests `seen` per backend out of `total` against the
/// `expected` weights (as shares of 1). All problems, sorted, joined by `; `.
pub fn check_distribution(
    seen: &BTreeMap<String, f64>,
    expected: &[(&str, f64)],
    total: usize,
) -> Result<(), String> {
    let mut errs = Vec::new();
    for k in seen.keys() {
        if !expected.iter().any(|(b, _)| b == k) {
            errs.push(format!("unexpected backend {k:?} received traffic"));
        }
    }
    for (backend, want) in expected {
        let got = seen.get(*backend).copied().unwrap_or(0.0);
        if *want == 0.0 {
            if got > 0.0 {
                errs.push(format!(
                    "backend {backend:?} has weight 0 but received {got} of {total} requests"
                ));
            }
            continue;
        }
        if got == 0.0 {
            errs.push(format!(
                "expect traffic to hit backend {backend:?} - but none was received"
            ));
            continue;
        }
        let share = got / total as f64;
        if (share - want).abs() > TOLERANCE {
            errs.push(format!(
                "backend {backend:?} weighted traffic of {share} not within tolerance {want} (+/-{TOLERANCE})"
            ));
        }
    }
    errs.sort();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: [(&str, f64); 3] = [("v1", 0.7), ("v2", 0.3), ("v3", 0.0)];

    fn seen(v1: f64, v2: f64, v3: f64) -> BTreeMap<String, f64> {
        [("v1", v1), ("v2", v2), ("v3", v3)]
            .into_iter()
            .filter(|(_, n)| *n > 0.0)
            .map(|(b, n)| (b.to_string(), n))
            .collect()
    }

    #[test]
    fn shares_within_tolerance_pass() {
        assert_eq!(
            check_distribution(&seen(340.0, 160.0, 0.0), &EXPECTED, 500),
            Ok(())
        );
    }

    #[test]
    fn one_request_to_a_weight_zero_backend_fails() {
        // 1 of 500 is within 5 points of 0: a tolerance check alone passes it.
        assert_eq!(
            check_distribution(&seen(349.0, 150.0, 1.0), &EXPECTED, 500),
            Err("backend \"v3\" has weight 0 but received 1 of 500 requests".into())
        );
    }

    #[test]
    fn missing_unexpected_and_skewed_backends_fail() {
        let mut s = seen(500.0, 0.0, 0.0);
        s.insert("other".into(), 1.0);
        let e = check_distribution(&s, &EXPECTED, 500).unwrap_err();
        assert!(
            e.contains("none was received") && e.contains("\"v2\""),
            "{e}"
        );
        assert!(e.contains("unexpected backend \"other\""), "{e}");
        assert!(e.contains("\"v1\" weighted traffic of 1"), "{e}");
    }

    #[test]
    fn backend_names_drop_the_pod_hashes() {
        assert_eq!(backend_of("infra-backend-v1-abc-xyz"), "infra-backend-v1");
        assert_eq!(backend_of("pod"), "pod");
    }
}
