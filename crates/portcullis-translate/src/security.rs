//! SecurityPolicy (`portcullis.dev/v1alpha1`): each policy resolved into an
//! [`ir::Security`] (Secrets read, the ext-auth Service resolved to endpoints),
//! attached with [`crate::attach`], and the effective one stored on every route
//! rule of the IR, so the data plane only reads it.
//!
//! A policy that cannot be resolved (a missing Secret, a reference across
//! namespaces without a ReferenceGrant, an unusable ext-auth Service) is
//! `Accepted=False/Invalid` and still takes its scopes: its route rules are
//! answered 500 rather than served unprotected (fail closed).

use std::sync::Arc;

use portcullis_ir as ir;
use portcullis_store::policy::{self as api, SecretRef};
use portcullis_store::status::{Status, Statuses};
use portcullis_store::{Kind, ObjectKey, ObjectRef};

use crate::Input;
use crate::attach::{Attachment, PolicyInput};
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::gateway::{GatewayState, Owner};
use crate::model::{BackendRefSpec, Meta};
use crate::refs::Grants;
use crate::routes::duration_ms;

const KIND: &str = "SecurityPolicy";

/// Read one key of a Secret the policy references.
fn secret_data(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    r: &SecretRef,
) -> Result<std::collections::BTreeMap<String, String>, Problem> {
    let to_ns = r.namespace.clone().unwrap_or_else(|| ns.to_string());
    if !grants.allowed_from(
        portcullis_store::policy::PORTCULLIS_GROUP,
        KIND,
        ns,
        "",
        "Secret",
        &to_ns,
        &r.name,
    ) {
        return Err(Problem::new(
            Reason::Invalid,
            format!(
                "Secret {to_ns}/{} is in another namespace and no ReferenceGrant allows the reference",
                r.name
            ),
        ));
    }
    let key = ObjectKey::new(to_ns, r.name.clone());
    let Some(secret) = input.snapshot.secrets.get(&key) else {
        return Err(Problem::new(
            Reason::Invalid,
            format!("Secret {key} does not exist"),
        ));
    };
    let mut out: std::collections::BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

fn cors(c: &api::Cors) -> ir::Cors {
    ir::Cors {
        allow_origins: c.allow_origins.clone(),
        allow_credentials: c.allow_credentials.unwrap_or(false),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c
            .max_age
            .as_deref()
            .and_then(duration_ms)
            .map(|ms| u32::try_from(ms / 1000).unwrap_or(u32::MAX)),
    }
}

fn sources(
    headers: Vec<(String, String)>,
    cookies: &[String],
    params: &[String],
) -> ir::security::TokenSources {
    ir::security::TokenSources {
        headers,
        cookies: cookies.to_vec(),
        params: params.to_vec(),
    }
}

fn jwt(j: &api::Jwt) -> ir::security::Jwt {
    ir::security::Jwt {
        optional: j.optional.unwrap_or(false),
        providers: j
            .providers
            .iter()
            .map(|p| ir::security::JwtProvider {
                name: p.name.clone(),
                issuer: p.issuer.clone().filter(|i| !i.is_empty()),
                audiences: p.audiences.clone(),
                keys: match (&p.remote_jwks, &p.local_jwks) {
                    (Some(r), _) => ir::security::JwksSource::Remote {
                        uri: r.uri.clone(),
                        refresh_s: r
                            .cache_duration
                            .as_deref()
                            .and_then(duration_ms)
                            .map(|ms| (ms / 1000).max(1))
                            .unwrap_or(300),
                    },
                    (None, l) => ir::security::JwksSource::Local(
                        l.as_ref()
                            .and_then(|l| l.inline.clone())
                            .unwrap_or_default(),
                    ),
                },
                claim_to_headers: p
                    .claim_to_headers
                    .iter()
                    .map(|c| (c.header.to_ascii_lowercase(), c.claim.clone()))
                    .collect(),
                extract: match &p.extract_from {
                    None => sources(vec![("authorization".into(), "Bearer ".into())], &[], &[]),
                    Some(e) => sources(
                        e.headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_ascii_lowercase(),
                                    h.value_prefix.clone().unwrap_or_default(),
                                )
                            })
                            .collect(),
                        &e.cookies,
                        &e.params,
                    ),
                },
            })
            .collect(),
    }
}

fn api_key(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    a: &api::ApiKeyAuth,
) -> Result<ir::security::ApiKeyAuth, Problem> {
    let mut clients: Vec<(String, ir::SecretString)> = vec![];
    for r in &a.credential_refs {
        for (client, key) in secret_data(input, grants, ns, r)? {
            if !clients.iter().any(|(c, _)| *c == client) {
                clients.push((client, ir::SecretString(key)));
            }
        }
    }
    Ok(ir::security::ApiKeyAuth {
        clients,
        extract: a
            .extract_from
            .iter()
            .map(|e| {
                sources(
                    e.headers
                        .iter()
                        .map(|h| (h.to_ascii_lowercase(), String::new()))
                        .collect(),
                    &e.cookies,
                    &e.params,
                )
            })
            .collect(),
        forward_client_id_header: a
            .forward_client_id_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
        sanitize: a.sanitize.unwrap_or(false),
    })
}

fn basic(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    b: &api::BasicAuth,
) -> Result<ir::security::BasicAuth, Problem> {
    let data = secret_data(input, grants, ns, &b.users)?;
    let Some(htpasswd) = data.get(".htpasswd") else {
        return Err(Problem::new(
            Reason::Invalid,
            format!("Secret {} has no .htpasswd key", b.users.name),
        ));
    };
    Ok(ir::security::BasicAuth {
        htpasswd: ir::SecretString(htpasswd.clone()),
        forward_username_header: b
            .forward_username_header
            .as_ref()
            .map(|h| h.to_ascii_lowercase()),
    })
}

fn ext_auth(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    e: &api::ExtAuth,
) -> Result<ir::security::ExtAuth, Problem> {
    let (r, grpc) = match (&e.http, &e.grpc) {
        (Some(h), _) => (h.backend_ref.as_ref().or(h.backend_refs.first()), false),
        (None, Some(g)) => (g.backend_ref.as_ref().or(g.backend_refs.first()), true),
        (None, None) => (None, false),
    };
    let Some(r) = r else {
        return Err(Problem::new(
            Reason::Invalid,
            "extAuth has no http or grpc backendRef",
        ));
    };
    let spec = BackendRefSpec {
        group: r.group.clone(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        namespace: r.namespace.clone(),
        port: r.port,
        weight: None,
        filters: vec![],
    };
    let to_ns = r.namespace.clone().unwrap_or_else(|| ns.to_string());
    if !grants.allowed_from(
        portcullis_store::policy::PORTCULLIS_GROUP,
        KIND,
        ns,
        "",
        "Service",
        &to_ns,
        &r.name,
    ) {
        return Err(Problem::new(
            Reason::Invalid,
            format!(
                "extAuth Service {to_ns}/{} is in another namespace and no ReferenceGrant allows the reference",
                r.name
            ),
        ));
    }
    // Same namespace (or granted above): resolve as a same-namespace reference.
    let resolved = crate::backends::service(input, grants, KIND, &to_ns, &spec);
    if let Some(p) = resolved.problem {
        return Err(Problem::new(
            Reason::Invalid,
            format!("extAuth: {}", p.message),
        ));
    }
    let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect();
    let http = e.http.as_ref();
    Ok(ir::security::ExtAuth {
        backend: resolved.backend,
        grpc,
        body_max_bytes: e.body_to_ext_auth.as_ref().map(|b| b.max_request_bytes),
        path_prefix: http.and_then(|h| h.path.clone()).unwrap_or_default(),
        headers_to_ext_auth: lower(&e.headers_to_ext_auth),
        headers_to_backend: http
            .map(|h| lower(&h.headers_to_backend))
            .unwrap_or_default(),
        timeout_ms: e.timeout.as_deref().and_then(duration_ms).unwrap_or(10_000),
        fail_open: e.fail_open.unwrap_or(false),
    })
}

/// The default `logoutPath`.
const DEFAULT_LOGOUT_PATH: &str = "/logout";

fn oidc(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    o: &api::Oidc,
) -> Result<ir::security::Oidc, Problem> {
    let data = secret_data(input, grants, ns, &o.client_secret)?;
    let Some(secret) = data.get("client-secret").filter(|s| !s.is_empty()) else {
        return Err(Problem::new(
            Reason::Invalid,
            format!("Secret {} has no client-secret key", o.client_secret.name),
        ));
    };
    let session_key = match data.get("session-key") {
        Some(k) if k.len() < 32 => {
            return Err(Problem::new(
                Reason::Invalid,
                format!(
                    "Secret {}: session-key must be at least 32 bytes",
                    o.client_secret.name
                ),
            ));
        }
        k => k.map(|k| ir::SecretString(k.clone())),
    };
    let url_ok = |field: &str, v: &str| -> Result<(), Problem> {
        let rest = v
            .strip_prefix("https://")
            .or_else(|| v.strip_prefix("http://"));
        let ok = rest.is_some_and(|r| {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains('@') && r.bytes().all(|b| b.is_ascii_graphic())
        });
        if ok {
            Ok(())
        } else {
            Err(Problem::new(
                Reason::Invalid,
                format!("oidc.{field} {v:?} is not an absolute http(s) URL"),
            ))
        }
    };
    url_ok("provider.issuer", &o.provider.issuer)?;
    for (f, v) in [
        (
            "provider.authorizationEndpoint",
            &o.provider.authorization_endpoint,
        ),
        ("provider.tokenEndpoint", &o.provider.token_endpoint),
        ("redirectURL", &o.redirect_url),
    ] {
        if let Some(v) = v {
            url_ok(f, v)?;
        }
    }
    // The domain goes into `Set-Cookie`: a hostname, nothing that could add attributes.
    if let Some(d) = &o.cookie_domain {
        let host = d.strip_prefix('.').unwrap_or(d);
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(Problem::new(
                Reason::Invalid,
                format!("oidc.cookieDomain {d:?} is not a hostname"),
            ));
        }
    }
    // Scopes go into the authorization URL (encoded) and must be scope tokens.
    if let Some(s) = o.scopes.iter().find(|s| {
        s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        return Err(Problem::new(
            Reason::Invalid,
            format!("oidc.scopes: {s:?} is not a scope token"),
        ));
    }
    let mut scopes = vec!["openid".to_string()];
    for s in &o.scopes {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    let mut deny_redirect = vec![];
    for h in o.deny_redirect.iter().flat_map(|d| &d.headers) {
        use ir::security::StringMatchKind as K;
        let kind = match h.type_.as_deref() {
            None | Some("Exact") => K::Exact,
            Some("Prefix") => K::Prefix,
            Some("Suffix") => K::Suffix,
            Some("RegularExpression") => {
                if let Err(e) = regex::Regex::new(&h.value) {
                    return Err(Problem::new(
                        Reason::Invalid,
                        format!("oidc.denyRedirect: regular expression {:?}: {e}", h.value),
                    ));
                }
                K::RegularExpression
            }
            Some(t) => {
                return Err(Problem::new(
                    Reason::Invalid,
                    format!("oidc.denyRedirect: unknown match type {t:?}"),
                ));
            }
        };
        deny_redirect.push(ir::security::HeaderMatch {
            name: h.name.to_ascii_lowercase(),
            kind,
            value: h.value.clone(),
        });
    }
    Ok(ir::security::Oidc {
        issuer: o.provider.issuer.clone(),
        authorization_endpoint: o.provider.authorization_endpoint.clone(),
        token_endpoint: o.provider.token_endpoint.clone(),
        client_id: o.client_id.clone(),
        client_secret: ir::SecretString(secret.clone()),
        session_key,
        scopes,
        redirect_url: o.redirect_url.clone(),
        logout_path: o
            .logout_path
            .clone()
            .unwrap_or_else(|| DEFAULT_LOGOUT_PATH.to_string()),
        forward_access_token: o.forward_access_token.unwrap_or(false),
        refresh_token: o.refresh_token.unwrap_or(false),
        cookie_domain: o.cookie_domain.clone(),
        deny_redirect,
    })
}

fn authorization(a: &api::Authorization) -> ir::security::Authorization {
    ir::security::Authorization {
        default_allow: a.default_action.as_deref() == Some("Allow"),
        rules: a
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = r.principal.clone().unwrap_or_default();
                ir::security::AuthorizationRule {
                    name: r.name.clone().unwrap_or_else(|| format!("rule-{i}")),
                    allow: r.action == "Allow",
                    client_cidrs: p.client_cidrs,
                    jwt: p.jwt.map(|j| ir::security::JwtPrincipal {
                        provider: j.provider,
                        claims: j
                            .claims
                            .into_iter()
                            .map(|c| ir::security::JwtClaim {
                                name: c.name,
                                string_array: c.value_type.as_deref() == Some("StringArray"),
                                values: c.values,
                            })
                            .collect(),
                        scopes: j.scopes,
                    }),
                    headers: p
                        .headers
                        .into_iter()
                        .map(|h| (h.name.to_ascii_lowercase(), h.values))
                        .collect(),
                }
            })
            .collect(),
    }
}

/// Resolve one policy.
fn build(
    input: &Input<'_>,
    grants: &Grants,
    ns: &str,
    key: &ObjectKey,
    s: &api::SecurityPolicySpec,
) -> Result<ir::Security, Problem> {
    Ok(ir::Security {
        policy: key.to_string(),
        invalid: None,
        cors: s.cors.as_ref().map(cors),
        jwt: s.jwt.as_ref().map(jwt),
        api_key: s
            .api_key_auth
            .as_ref()
            .map(|a| api_key(input, grants, ns, a))
            .transpose()?,
        basic: s
            .basic_auth
            .as_ref()
            .map(|b| basic(input, grants, ns, b))
            .transpose()?,
        oidc: s
            .oidc
            .as_ref()
            .map(|o| oidc(input, grants, ns, o))
            .transpose()?,
        ext_auth: s
            .ext_auth
            .as_ref()
            .map(|e| ext_auth(input, grants, ns, e))
            .transpose()?,
        authorization: s.authorization.as_ref().map(authorization),
    })
}

/// Attach every SecurityPolicy, store the effective one on each route rule of
/// the IR, and write the policies' statuses.
pub(crate) fn apply(
    input: &Input<'_>,
    grants: &Grants,
    gws: &mut [GatewayState],
    statuses: &mut Statuses,
) {
    if input.snapshot.security_policies.is_empty() {
        return;
    }
    let mut irs: Vec<Arc<ir::Security>> = vec![];
    let mut inputs: Vec<PolicyInput> = vec![];
    let mut keys: Vec<ObjectKey> = vec![];
    for (key, p) in &input.snapshot.security_policies {
        let meta = Meta::keyed(&p.metadata, key);
        let (sec, invalid) = match build(input, grants, &key.namespace, key, &p.spec) {
            Ok(s) => (s, None),
            Err(problem) => (
                ir::Security {
                    policy: key.to_string(),
                    invalid: Some(problem.message.clone()),
                    ..ir::Security::default()
                },
                Some(problem),
            ),
        };
        irs.push(Arc::new(sec));
        inputs.push(PolicyInput {
            meta,
            targets: p.spec.targets().cloned().collect(),
            invalid,
        });
        keys.push(key.clone());
    }
    let mut att = Attachment::new(input, gws, inputs);
    for gw in gws.iter_mut() {
        let gw_key = gw.key.clone();
        for l in gw.listeners.iter_mut() {
            let listener = (l.owner == Owner::Gateway).then(|| l.spec.name.clone());
            for r in l.http_rules.iter_mut() {
                if let Some(i) = att.effective(&gw_key, listener.as_deref(), &r.meta) {
                    // Shared with earlier translations: copied on write.
                    std::sync::Arc::make_mut(r).action.security = Some(irs[i].clone());
                }
            }
        }
    }
    for (i, ancestors) in att.statuses(&input.options.controller_name) {
        statuses.insert(
            ObjectRef {
                kind: Kind::SecurityPolicy,
                key: keys[i].clone(),
            },
            Status::Policy { ancestors },
        );
    }
    debug_assert_eq!(att.policies().len(), keys.len());
}
