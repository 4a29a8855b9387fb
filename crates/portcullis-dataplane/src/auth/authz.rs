//! Authorization (`authorization`): ordered rules, first match decides,
//! `defaultAction` (default `Deny`) when none matches; a denial is 403.
//!
//! A rule matches when every principal kind it names matches:
//! - `clientCIDRs`: the client address ([`crate::client_addr`], never a raw
//!   `X-Forwarded-For`) is in one of them;
//! - `jwt`: the request's token was validated by that provider (of the same
//!   policy), every claim has one of its values (`StringArray`: any element),
//!   and every scope is in the space-separated `scope` claim (or `scp` list);
//! - `headers`: every header has one of its values (exact).
//!
//! A rule without a principal matches every request.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;
use portcullis_ir::security as ir;
use serde_json::Value;

use super::Identity;
use super::jwt::{claim_string, lookup};

#[derive(Debug)]
struct Rule {
    name: Box<str>,
    allow: bool,
    cidrs: Vec<IpNet>,
    jwt: Option<ir::JwtPrincipal>,
    headers: Vec<(String, Vec<String>)>,
}

/// Compiled authorization rules.
#[derive(Debug)]
pub struct Authz {
    rules: Vec<Rule>,
    default_allow: bool,
}

fn claim_matches(v: Option<&Value>, c: &ir::JwtClaim) -> bool {
    match v {
        Some(Value::Array(items)) if c.string_array => items
            .iter()
            .filter_map(claim_string)
            .any(|s| c.values.contains(&s)),
        Some(v) if !c.string_array => claim_string(v).is_some_and(|s| c.values.contains(&s)),
        _ => false,
    }
}

fn scopes(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = vec![];
    if let Some(Value::String(s)) = claims.get("scope") {
        out.extend(s.split_whitespace().map(str::to_string));
    }
    if let Some(Value::Array(a)) = claims.get("scp") {
        out.extend(a.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    out
}

impl Rule {
    fn matches(&self, client: IpAddr, headers: &HeaderMap, id: &Identity) -> bool {
        if !self.cidrs.is_empty() && !self.cidrs.iter().any(|n| n.contains(&client)) {
            return false;
        }
        if let Some(j) = &self.jwt {
            let Some((provider, claims)) = &id.jwt else {
                return false;
            };
            if **provider != *j.provider {
                return false;
            }
            if !j
                .claims
                .iter()
                .all(|c| claim_matches(lookup(claims, &c.name), c))
            {
                return false;
            }
            if !j.scopes.is_empty() {
                let have = scopes(claims);
                if !j.scopes.iter().all(|s| have.contains(s)) {
                    return false;
                }
            }
        }
        self.headers.iter().all(|(name, values)| {
            headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| values.iter().any(|want| want == v))
        })
    }
}

impl Authz {
    /// Compile.
    pub fn new(a: &ir::Authorization) -> Result<Self, String> {
        let rules = a
            .rules
            .iter()
            .map(|r| {
                let cidrs = r
                    .client_cidrs
                    .iter()
                    .map(|c| {
                        c.parse::<IpNet>()
                            .map(|n| n.trunc())
                            .map_err(|e| format!("{}: clientCIDRs {c:?}: {e}", r.name))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Rule {
                    name: r.name.as_str().into(),
                    allow: r.allow,
                    cidrs,
                    jwt: r.jwt.clone(),
                    headers: r.headers.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Authz {
            rules,
            default_allow: a.default_allow,
        })
    }

    /// Whether the request is allowed.
    pub fn allows(&self, client: IpAddr, headers: &HeaderMap, id: &Identity) -> bool {
        for r in &self.rules {
            if r.matches(client, headers, id) {
                tracing::debug!(rule = %r.name, allow = r.allow, %client, "authorization rule matched");
                return r.allow;
            }
        }
        self.default_allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz(rules: Vec<ir::AuthorizationRule>, default_allow: bool) -> Authz {
        Authz::new(&ir::Authorization {
            rules,
            default_allow,
        })
        .unwrap()
    }

    fn rule(allow: bool) -> ir::AuthorizationRule {
        ir::AuthorizationRule {
            name: "r".into(),
            allow,
            client_cidrs: vec![],
            jwt: None,
            headers: vec![],
        }
    }

    #[test]
    fn first_match_wins_and_default() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        let a = authz(
            vec![
                ir::AuthorizationRule {
                    client_cidrs: vec!["10.0.0.0/8".into()],
                    ..rule(false)
                },
                ir::AuthorizationRule {
                    client_cidrs: vec!["0.0.0.0/0".into()],
                    ..rule(true)
                },
            ],
            false,
        );
        let h = HeaderMap::new();
        let id = Identity::default();
        assert!(!a.allows(ip, &h, &id));
        assert!(a.allows(other, &h, &id));
        assert!(!authz(vec![], false).allows(ip, &h, &id));
        assert!(authz(vec![], true).allows(ip, &h, &id));
    }

    #[test]
    fn jwt_claims_scopes_and_headers() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let a = authz(
            vec![ir::AuthorizationRule {
                jwt: Some(ir::JwtPrincipal {
                    provider: "p".into(),
                    claims: vec![
                        ir::JwtClaim {
                            name: "org.team".into(),
                            string_array: false,
                            values: vec!["blue".into()],
                        },
                        ir::JwtClaim {
                            name: "groups".into(),
                            string_array: true,
                            values: vec!["admin".into()],
                        },
                    ],
                    scopes: vec!["write".into()],
                }),
                headers: vec![("x-env".into(), vec!["prod".into()])],
                ..rule(true)
            }],
            false,
        );
        let claims: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "org": {"team": "blue"}, "groups": ["dev", "admin"], "scope": "read write"
        }))
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-env", "prod".parse().unwrap());
        let id = Identity {
            jwt: Some(("p".into(), claims.clone().into())),
        };
        assert!(a.allows(ip, &h, &id));
        let other = Identity {
            jwt: Some(("q".into(), claims.into())),
        };
        assert!(!a.allows(ip, &h, &other));
        assert!(!a.allows(ip, &HeaderMap::new(), &id));
        assert!(!a.allows(ip, &h, &Identity::default()));
    }
}
