//! Trace-context propagation formats: W3C Trace Context (`traceparent`,
//! `tracestate`; the default) and, when asked for, B3 — the single `b3`
//! header and the multi-header `X-B3-TraceId`, `X-B3-SpanId`,
//! `X-B3-ParentSpanId`, `X-B3-Sampled`, `X-B3-Flags`
//! (<https://github.com/openzipkin/b3-propagation>).
//!
//! Extraction tries the enabled formats in order: W3C, then B3 single, then
//! B3 multi; the first valid context is the parent. Injection removes every
//! enabled format's headers from the request and writes the span's context
//! in each of them, so the upstream sees one trace whatever it reads.

use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;

const B3: HeaderName = HeaderName::from_static("b3");
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_PARENT: HeaderName = HeaderName::from_static("x-b3-parentspanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Which formats are read from requests and written upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagation {
    /// W3C `traceparent`/`tracestate`.
    pub w3c: bool,
    /// B3 single header `b3`.
    pub b3: bool,
    /// B3 multi headers `X-B3-*`.
    pub b3_multi: bool,
}

impl Default for Propagation {
    fn default() -> Self {
        Propagation {
            w3c: true,
            b3: false,
            b3_multi: false,
        }
    }
}

/// A propagation list that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "trace propagation {0:?}: expected a comma-separated list of tracecontext (or w3c), b3, b3multi"
)]
pub struct PropagationError(String);

impl FromStr for Propagation {
    type Err = PropagationError;

    /// `tracecontext,b3,b3multi` (any non-empty subset; `w3c` is `tracecontext`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = Propagation {
            w3c: false,
            b3: false,
            b3_multi: false,
        };
        for name in s.split(',').map(str::trim) {
            match name.to_ascii_lowercase().as_str() {
                "tracecontext" | "w3c" => p.w3c = true,
                "b3" => p.b3 = true,
                "b3multi" => p.b3_multi = true,
                _ => return Err(PropagationError(s.to_owned())),
            }
        }
        Ok(p)
    }
}

fn hex_id<'a>(s: &'a str, lens: &[usize]) -> Option<&'a str> {
    (lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// A B3 trace id: 16 or 32 hex digits (64-bit ids are zero-extended).
fn b3_trace_id(s: &str) -> Option<TraceId> {
    let id = TraceId::from_hex(hex_id(s, &[16, 32])?).ok()?;
    (id != TraceId::INVALID).then_some(id)
}

fn b3_span_id(s: &str) -> Option<SpanId> {
    let id = SpanId::from_hex(hex_id(s, &[16])?).ok()?;
    (id != SpanId::INVALID).then_some(id)
}

/// `1`, `d` (debug) and `true` sample; `0` and `false` do not.
fn b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// A deferred sampling decision, taken as the SDK's trace-id ratio sampler
/// takes it (the low 63 bits of the trace id against the ratio), so every
/// hop with the same ratio agrees.
fn by_ratio(trace: TraceId, ratio: f64) -> bool {
    let low = u64::from_be_bytes(trace.to_bytes()[8..].try_into().expect("8 bytes"));
    let bound = (ratio.clamp(0.0, 1.0) * (1u64 << 63) as f64) as u64;
    (low >> 1) < bound
}

fn remote(trace: TraceId, span: SpanId, sampled: bool) -> SpanContext {
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::NOT_SAMPLED
    };
    SpanContext::new(trace, span, flags, true, TraceState::NONE)
}

/// `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`. A header with
/// the sampling state only (`b3: 0`) carries no context.
fn extract_b3_single(headers: &HeaderMap, ratio: f64) -> Option<SpanContext> {
    let v = headers.get(B3)?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let trace = b3_trace_id(parts.next()?)?;
    let span = b3_span_id(parts.next()?)?;
    // No sampling state: the decision is deferred to this hop (the ratio).
    let sampled = match parts.next() {
        None => by_ratio(trace, ratio),
        Some(s) => b3_sampled(s)?,
    };
    if let Some(parent) = parts.next() {
        b3_span_id(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(remote(trace, span, sampled))
}

fn extract_b3_multi(headers: &HeaderMap, ratio: f64) -> Option<SpanContext> {
    let get = |n: &HeaderName| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let trace = b3_trace_id(get(&B3_TRACE_ID)?)?;
    let span = b3_span_id(get(&B3_SPAN_ID)?)?;
    let sampled = if get(&B3_FLAGS) == Some("1") {
        true
    } else {
        match get(&B3_SAMPLED) {
            None => by_ratio(trace, ratio),
            Some(s) => b3_sampled(s)?,
        }
    };
    Some(remote(trace, span, sampled))
}

impl Propagation {
    /// The parent context the request carries in an enabled format, else an
    /// empty context. `ratio` takes a B3 deferred sampling decision.
    pub fn extract(
        &self,
        headers: &HeaderMap,
        w3c: &TraceContextPropagator,
        ratio: f64,
    ) -> Context {
        if self.w3c {
            let cx = w3c.extract(&HeaderExtractor(headers));
            if cx.span().span_context().is_valid() {
                return cx;
            }
        }
        let found = (self.b3.then(|| extract_b3_single(headers, ratio)).flatten()).or_else(|| {
            self.b3_multi
                .then(|| extract_b3_multi(headers, ratio))
                .flatten()
        });
        match found {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        }
    }

    /// Replace the enabled formats' headers with `cx`'s span context.
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap, w3c: &TraceContextPropagator) {
        if self.w3c {
            headers.remove("traceparent");
            headers.remove("tracestate");
            w3c.inject_context(cx, &mut HeaderInjector(headers));
        }
        if !(self.b3 || self.b3_multi) {
            return;
        }
        let sc = cx.span().span_context().clone();
        let (trace, span) = (sc.trace_id().to_string(), sc.span_id().to_string());
        let sampled = if sc.is_sampled() { "1" } else { "0" };
        if self.b3 {
            let v = format!("{trace}-{span}-{sampled}");
            headers.insert(B3, HeaderValue::from_str(&v).expect("hex digits"));
        }
        if self.b3_multi {
            for n in [&B3_PARENT, &B3_FLAGS] {
                headers.remove(n);
            }
            let put = |h: &mut HeaderMap, n: &HeaderName, v: &str| {
                h.insert(n.clone(), HeaderValue::from_str(v).expect("hex digits"));
            };
            put(headers, &B3_TRACE_ID, &trace);
            put(headers, &B3_SPAN_ID, &span);
            put(headers, &B3_SAMPLED, sampled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ctx(p: Propagation, pairs: &[(&str, &str)]) -> Option<(String, String, bool)> {
        ctx_at(p, pairs, 1.0)
    }

    fn ctx_at(
        p: Propagation,
        pairs: &[(&str, &str)],
        ratio: f64,
    ) -> Option<(String, String, bool)> {
        let cx = p.extract(&headers(pairs), &TraceContextPropagator::new(), ratio);
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            (
                sc.trace_id().to_string(),
                sc.span_id().to_string(),
                sc.is_sampled(),
            )
        })
    }

    const T: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const S: &str = "e457b5a2e4d86bd1";

    #[test]
    fn lists_parse() {
        let p: Propagation = "tracecontext,b3".parse().unwrap();
        assert!(p.w3c && p.b3 && !p.b3_multi);
        let p: Propagation = "b3multi".parse().unwrap();
        assert!(!p.w3c && !p.b3 && p.b3_multi);
        assert!("w3c, B3".parse::<Propagation>().unwrap().b3);
        for bad in ["", "zipkin", "b3,,w3c"] {
            assert!(bad.parse::<Propagation>().is_err(), "{bad}");
        }
    }

    #[test]
    fn b3_single_header() {
        let p: Propagation = "b3".parse().unwrap();
        let want = Some((T.to_owned(), S.to_owned(), true));
        assert_eq!(ctx(p, &[("b3", &format!("{T}-{S}-1"))]), want);
        assert_eq!(
            ctx(p, &[("b3", &format!("{T}-{S}-d-05e3ac9a4f6e3b90"))]),
            want
        );
        assert_eq!(
            ctx(p, &[("b3", &format!("{T}-{S}"))]),
            want,
            "deferred, ratio 1"
        );
        let deferred = ctx_at(p, &[("b3", &format!("{T}-{S}"))], 0.0).unwrap();
        assert!(!deferred.2, "deferred, ratio 0");
        let unsampled = ctx(p, &[("b3", &format!("{T}-{S}-0"))]).unwrap();
        assert!(!unsampled.2);
        // 64-bit trace ids are zero-extended.
        let short = ctx(p, &[("b3", &format!("64fe8b2a57d3eff7-{S}-1"))]).unwrap();
        assert_eq!(short.0, "000000000000000064fe8b2a57d3eff7");
        for bad in [
            "0",
            "1",
            &format!("{T}-{S}-x"),
            &format!("{T}-0000000000000000-1"),
            &format!("+{}-{S}-1", &T[1..]),
            &format!("{T}-{S}-1-zz"),
            &format!("{T}-{S}-1-{S}-extra"),
        ] {
            assert_eq!(ctx(p, &[("b3", bad)]), None, "{bad}");
        }
        // Not enabled: ignored.
        assert_eq!(
            ctx(Propagation::default(), &[("b3", &format!("{T}-{S}-1"))]),
            None
        );
    }

    #[test]
    fn b3_multi_headers() {
        let p: Propagation = "b3multi".parse().unwrap();
        let base = [("x-b3-traceid", T), ("x-b3-spanid", S)];
        assert_eq!(ctx(p, &base), Some((T.into(), S.into(), true)));
        assert!(!ctx_at(p, &base, 0.0).unwrap().2, "deferred, ratio 0");
        let mut h = base.to_vec();
        h.push(("x-b3-sampled", "0"));
        assert!(!ctx(p, &h).unwrap().2);
        h.push(("x-b3-flags", "1"));
        assert!(ctx(p, &h).unwrap().2, "debug wins");
        assert_eq!(ctx(p, &[("x-b3-traceid", T)]), None);
    }

    #[test]
    fn w3c_first_then_b3() {
        let p: Propagation = "tracecontext,b3".parse().unwrap();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let got = ctx(p, &[("traceparent", tp), ("b3", &format!("{T}-{S}-1"))]).unwrap();
        assert_eq!(got.0, "4bf92f3577b34da6a3ce929d0e0e4736");
        let got = ctx(
            p,
            &[("traceparent", "garbage"), ("b3", &format!("{T}-{S}-1"))],
        );
        assert_eq!(got.unwrap().0, T);
    }

    #[test]
    fn inject_writes_every_enabled_format() {
        let p: Propagation = "tracecontext,b3,b3multi".parse().unwrap();
        let w3c = TraceContextPropagator::new();
        let sc = remote(
            TraceId::from_hex(T).unwrap(),
            SpanId::from_hex(S).unwrap(),
            true,
        );
        let cx = Context::new().with_remote_span_context(sc);
        let mut h = headers(&[
            ("b3", "0"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-flags", "1"),
        ]);
        p.inject(&cx, &mut h, &w3c);
        assert_eq!(h["traceparent"], format!("00-{T}-{S}-01").as_str());
        assert_eq!(h["b3"], format!("{T}-{S}-1").as_str());
        assert_eq!(h["x-b3-traceid"], T);
        assert_eq!(h["x-b3-spanid"], S);
        assert_eq!(h["x-b3-sampled"], "1");
        assert!(h.get("x-b3-parentspanid").is_none() && h.get("x-b3-flags").is_none());
    }
}
