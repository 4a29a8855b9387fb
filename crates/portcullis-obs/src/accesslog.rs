//! Access logs: one line per request, JSON or text (logfmt), written by a
//! writer thread behind a bounded channel so the request path never waits
//! on I/O. When the writer falls behind, lines are dropped and counted in
//! `portcullis_access_log_dropped_lines_total`.
//!
//! Batching: an idle writer blocks on the channel, so the first line after a
//! quiet spell wakes it (one futex call on the request path) and is written
//! at once. Once lines flow, the writer stops blocking: it sleeps
//! [`BATCH_WAIT`] between rounds, takes everything queued and writes it
//! with one `write`, so under load the request path makes no system call
//! for the log and the writer one per round, not one per line. A round that
//! finds nothing puts it back to blocking. A line is on disk at most
//! [`BATCH_WAIT`] (plus its formatting) after its request ended;
//! [`flush`] (called when the data plane shuts down) writes what is queued.
//!
//! - [`install`] starts the writer (once per process); [`enabled`] is one
//!   relaxed atomic load, so a gateway with the log off pays nothing else.
//! - Output: stdout, or a file reopened on [`reopen`] (SIGHUP in the binary),
//!   for logrotate's `create` mode.
//! - Fields ([`Field`]) are chosen by name; the default set is every field
//!   but `query`. No header is logged, so `Authorization`, cookies and API
//!   keys never are; the query, when asked for, has the values of
//!   credential-looking parameters (see [`redact_query`]) replaced.
//! - Response flags ([`Flag`]) tell why the gateway answered itself.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Lines waiting for the writer before new ones are dropped.
pub const CHANNEL_LINES: usize = 8192;

/// The writer's pause between rounds while lines flow (see the module
/// documentation).
pub const BATCH_WAIT: Duration = Duration::from_millis(10);

/// What the writer thread receives. Lines are not boxed: the channel's
/// slots are allocated once, a box would be one allocation per request.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Line(Entry),
    /// Write everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// Line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// `key=value` pairs (logfmt), values quoted when needed, `-` for none.
    Text,
    /// No access log.
    Off,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "text" => Ok(Format::Text),
            "off" => Ok(Format::Off),
            _ => Err(format!("unknown access-log format {s:?} (json, text, off)")),
        }
    }
}

macro_rules! fields {
    ($($(#[$doc:meta])* $v:ident = $n:literal,)*) => {
        /// A field of the access log, by its name in both formats.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Field {
            $($(#[$doc])* $v,)*
        }
        impl Field {
            /// Every field, in line order.
            pub const ALL: &'static [Field] = &[$(Field::$v,)*];
            /// Its name.
            pub fn name(self) -> &'static str {
                match self { $(Field::$v => $n,)* }
            }
        }
    };
}

fields! {
    /// RFC 3339 UTC time the request finished, millisecond precision.
    Time = "time",
    /// `x-request-id` of the request, else one the gateway made.
    RequestId = "request_id",
    /// W3C trace id (from `traceparent`, or the gateway's span).
    TraceId = "trace_id",
    /// Client address (`ip:port` of the peer).
    Client = "client",
    /// Request method.
    Method = "method",
    /// Request authority (`Host`).
    Authority = "authority",
    /// Request path, without the query.
    Path = "path",
    /// The query, credential-looking values redacted (not in the default set).
    Query = "query",
    /// `HTTP/1.1` or `HTTP/2`.
    Protocol = "protocol",
    /// Response status.
    Status = "status",
    /// Response flags ([`Flag`]), `-` when the upstream answered.
    Flags = "response_flags",
    /// Request body bytes.
    BytesIn = "bytes_in",
    /// Response body bytes.
    BytesOut = "bytes_out",
    /// Milliseconds from the request head to the end of the response body.
    Duration = "duration_ms",
    /// Milliseconds from the first upstream attempt to the upstream response head.
    UpstreamDuration = "upstream_duration_ms",
    /// Upstream endpoint `ip:port`.
    Upstream = "upstream",
    /// `namespace/name` of the Gateway.
    Gateway = "gateway",
    /// Listener name.
    Listener = "listener",
    /// `namespace/name` of the route.
    Route = "route",
    /// Rule: its name, else its index.
    Rule = "rule",
    /// `namespace/name:port` of the backend.
    Backend = "backend",
}

impl FromStr for Field {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Field::ALL
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown access-log field {s:?}"))
    }
}

/// Parse a comma-separated field list.
pub fn parse_fields(s: &str) -> Result<Vec<Field>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(Field::from_str)
        .collect()
}

/// The default fields: all but `query`.
pub fn default_fields() -> Vec<Field> {
    Field::ALL
        .iter()
        .copied()
        .filter(|f| *f != Field::Query)
        .collect()
}

/// Why the gateway answered a request itself (the `response_flags` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// `NR`: no listener or route matched (404).
    NoRoute,
    /// `IB`: the chosen backend is invalid (500).
    InvalidBackend,
    /// `IF`: the rule has an unresolved filter (500).
    InvalidFilter,
    /// `UH`: the backend has no ready endpoint (503).
    NoHealthyUpstream,
    /// `UF`: connecting to or exchanging with the upstream failed (502).
    UpstreamFailure,
    /// `UT`: a request or backend-request timeout expired (504).
    UpstreamTimeout,
    /// `BR`: the request was malformed (400).
    BadRequest,
    /// `PL`: the request body is larger than allowed (413).
    PayloadTooLarge,
    /// `MR`: the Host belongs to another listener than the TLS SNI (421).
    Misdirected,
    /// `NI`: the request uses a transfer coding other than `chunked` (501).
    NotImplemented,
    /// `RT`: the client did not send the request body in time (408).
    RequestTimeout,
    /// `DC`: the client went away before the response body was sent.
    DownstreamClosed,
    /// `RL`: a BackendTrafficPolicy rate limit refused the request (429).
    RateLimited,
    /// `RLSE`: the global rate-limit service (Redis) could not decide and the
    /// limit fails closed (503).
    RateLimitServiceError,
    /// `UO`: the backend's circuit breaker refused the request (503).
    UpstreamOverflow,
    /// `FI`: a BackendTrafficPolicy fault injection answered the request.
    FaultInjected,
}

impl Flag {
    /// Its code.
    pub fn code(self) -> &'static str {
        match self {
            Flag::NoRoute => "NR",
            Flag::InvalidBackend => "IB",
            Flag::InvalidFilter => "IF",
            Flag::NoHealthyUpstream => "UH",
            Flag::UpstreamFailure => "UF",
            Flag::UpstreamTimeout => "UT",
            Flag::BadRequest => "BR",
            Flag::PayloadTooLarge => "PL",
            Flag::Misdirected => "MR",
            Flag::NotImplemented => "NI",
            Flag::RequestTimeout => "RT",
            Flag::DownstreamClosed => "DC",
            Flag::RateLimited => "RL",
            Flag::RateLimitServiceError => "RLSE",
            Flag::UpstreamOverflow => "UO",
            Flag::FaultInjected => "FI",
        }
    }
}

/// One request, as logged. Built on the request path (only when the log is
/// on), formatted by the writer thread.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// When it finished.
    pub time: Option<SystemTime>,
    /// Request id.
    pub request_id: String,
    /// Trace id (32 hex digits), empty when none.
    pub trace_id: String,
    /// Client `ip:port`.
    pub client: String,
    /// Method.
    pub method: String,
    /// Authority.
    pub authority: String,
    /// Path without query.
    pub path: String,
    /// Raw query (redacted when formatted), if any.
    pub query: Option<String>,
    /// `HTTP/1.1`, `HTTP/2`...
    pub protocol: &'static str,
    /// Status.
    pub status: u16,
    /// Response flag.
    pub flag: Option<Flag>,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Whole duration.
    pub duration: Duration,
    /// Upstream duration.
    pub upstream_duration: Option<Duration>,
    /// Upstream address.
    pub upstream: Option<std::net::SocketAddr>,
    /// Gateway `namespace/name`.
    pub gateway: String,
    /// Listener name.
    pub listener: String,
    /// Route `namespace/name`.
    pub route: String,
    /// Rule name or index.
    pub rule: String,
    /// Backend `namespace/name:port`.
    pub backend: String,
}

/// Where lines go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// A file (appended to; reopened on [`reopen`]).
    File(PathBuf),
}

/// Access-log settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Line format.
    pub format: Format,
    /// Fields, in order.
    pub fields: Vec<Field>,
    /// Destination.
    pub output: Output,
}

struct Sink {
    tx: SyncSender<Msg>,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static REOPEN: AtomicBool = AtomicBool::new(false);
static SINK: OnceLock<Sink> = OnceLock::new();
static SINK_LOCK: Mutex<()> = Mutex::new(());

/// Whether an access log is installed and on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Ask the writer to reopen its file before the next line (SIGHUP).
pub fn reopen() {
    REOPEN.store(true, Ordering::Relaxed);
}

/// Queue a line; never blocks. A full queue drops it (counted).
pub fn log(e: Entry) {
    let Some(sink) = SINK.get() else { return };
    match sink.tx.try_send(Msg::Line(e)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
            crate::metrics().access_log_dropped.inc();
        }
    }
}

/// Write every line queued so far, waiting at most `wait` (shutdown).
pub fn flush(wait: Duration) {
    let Some(sink) = SINK.get() else { return };
    let (ack, done) = std::sync::mpsc::sync_channel(1);
    let deadline = std::time::Instant::now() + wait;
    let mut msg = Msg::Flush(ack);
    // The queue may be full: retry until the deadline.
    loop {
        match sink.tx.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if std::time::Instant::now() < deadline => {
                msg = m;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
    let _ = done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
}

/// Start the writer thread (once per process; a second call is an error).
/// `Format::Off` installs nothing.
pub fn install(cfg: Config) -> io::Result<()> {
    install_with(cfg, CHANNEL_LINES)
}

/// [`install`] with a chosen queue length (tests).
pub fn install_with(cfg: Config, lines: usize) -> io::Result<()> {
    if cfg.format == Format::Off {
        return Ok(());
    }
    let _g = SINK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if SINK.get().is_some() {
        return Err(io::Error::other("access log already installed"));
    }
    let out = open(&cfg.output)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(lines.max(1));
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || writer(rx, out, cfg))?;
    let _ = SINK.set(Sink { tx });
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

fn open(o: &Output) -> io::Result<Box<dyn Write + Send>> {
    Ok(match o {
        Output::Stdout => Box::new(io::stdout()),
        Output::File(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?,
        ),
    })
}

fn writer(rx: Receiver<Msg>, out: Box<dyn Write + Send>, cfg: Config) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    let mut flowing = false;
    loop {
        let first = if flowing {
            // Lines queued meanwhile wake nobody: the writer is not parked.
            std::thread::sleep(BATCH_WAIT);
            match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => {
                    flowing = false;
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            }
        };
        let mut next = Some(first);
        let mut acks = vec![];
        while let Some(m) = next.take() {
            match m {
                Msg::Line(e) => {
                    if REOPEN.swap(false, Ordering::Relaxed)
                        && let Output::File(p) = &cfg.output
                    {
                        let _ = out.flush();
                        match open(&cfg.output) {
                            Ok(f) => out = BufWriter::with_capacity(64 * 1024, f),
                            Err(err) => {
                                tracing::warn!(path = %p.display(), error = %err, "access log: cannot reopen")
                            }
                        }
                    }
                    line.clear();
                    format_line(&mut line, &e, &cfg.fields, cfg.format);
                    if out.write_all(line.as_bytes()).is_err() {
                        crate::metrics().access_log_dropped.inc();
                    }
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
        for a in acks {
            let _ = a.try_send(());
        }
        flowing = true;
    }
    let _ = out.flush();
}

/// Query parameters whose values are replaced by `REDACTED`: names that
/// contain (case-insensitively) one of these.
pub const SENSITIVE_PARAMS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "auth",
    "signature",
    "sig",
    "credential",
    "session",
];

/// The query with the values of credential-looking parameters replaced.
pub fn redact_query(q: &str) -> String {
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let lk = k.to_ascii_lowercase();
            if !v.is_empty() && SENSITIVE_PARAMS.iter().any(|s| lk.contains(s)) {
                format!("{k}=REDACTED")
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

enum Val<'a> {
    Str(&'a str),
    Num(u64),
    Ms(Duration),
    None,
}

fn field<'a>(e: &'a Entry, f: Field, tmp: &'a mut String) -> Val<'a> {
    let s = |v: &'a str| if v.is_empty() { Val::None } else { Val::Str(v) };
    match f {
        Field::Time => {
            let t = e.time.unwrap_or_else(SystemTime::now);
            rfc3339(tmp, t);
            Val::Str(tmp)
        }
        Field::RequestId => s(&e.request_id),
        Field::TraceId => s(&e.trace_id),
        Field::Client => s(&e.client),
        Field::Method => s(&e.method),
        Field::Authority => s(&e.authority),
        Field::Path => s(&e.path),
        Field::Query => match &e.query {
            Some(q) => {
                *tmp = redact_query(q);
                Val::Str(tmp)
            }
            None => Val::None,
        },
        Field::Protocol => s(e.protocol),
        Field::Status => Val::Num(u64::from(e.status)),
        Field::Flags => e.flag.map_or(Val::None, |f| Val::Str(f.code())),
        Field::BytesIn => Val::Num(e.bytes_in),
        Field::BytesOut => Val::Num(e.bytes_out),
        Field::Duration => Val::Ms(e.duration),
        Field::UpstreamDuration => e.upstream_duration.map_or(Val::None, Val::Ms),
        Field::Upstream => match e.upstream {
            Some(a) => {
                let _ = write!(tmp, "{a}");
                Val::Str(tmp)
            }
            None => Val::None,
        },
        Field::Gateway => s(&e.gateway),
        Field::Listener => s(&e.listener),
        Field::Route => s(&e.route),
        Field::Rule => s(&e.rule),
        Field::Backend => s(&e.backend),
    }
}

/// Format one line (with its newline) into `out`.
pub fn format_line(out: &mut String, e: &Entry, fields: &[Field], format: Format) {
    let mut tmp = String::new();
    match format {
        Format::Json => {
            out.push('{');
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(f.name());
                out.push_str("\":");
                tmp.clear();
                match field(e, *f, &mut tmp) {
                    Val::Str(v) => json_str(out, v),
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Val::Ms(d) => {
                        let _ = write!(out, "{:.3}", d.as_secs_f64() * 1e3);
                    }
                    Val::None => out.push_str("null"),
                }
            }
            out.push_str("}\n");
        }
        Format::Text | Format::Off => {
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(f.name());
                out.push('=');
                tmp.clear();
                match field(e, *f, &mut tmp) {
                    Val::Str(v) => logfmt_str(out, v),
                    Val::Num(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Val::Ms(d) => {
                        let _ = write!(out, "{:.3}", d.as_secs_f64() * 1e3);
                    }
                    Val::None => out.push('-'),
                }
            }
            out.push('\n');
        }
    }
}

fn json_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn logfmt_str(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
    if plain {
        out.push_str(v);
    } else {
        json_str(out, v);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Open `path` for appending, to check it before serving.
pub fn check_file(path: &std::path::Path) -> io::Result<()> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// Counts the writes that reach the output (the system calls a file
    /// would see) and keeps the bytes.
    #[derive(Clone, Default)]
    struct Counting {
        writes: Arc<AtomicUsize>,
        bytes: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Counting {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.bytes.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Lines arriving one per millisecond (a steady load) are written in
    /// rounds, not one write per line; a flush answers only when every
    /// line before it is out.
    #[test]
    fn a_steady_flow_of_lines_is_written_in_batches_and_flush_writes_all() {
        let out = Counting::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_LINES);
        let cfg = Config {
            format: Format::Text,
            fields: vec![Field::Path],
            output: Output::Stdout,
        };
        let o = out.clone();
        let w = std::thread::spawn(move || writer(rx, Box::new(o), cfg));
        let n = 300;
        for i in 0..n {
            let e = Entry {
                path: format!("/{i}"),
                ..Default::default()
            };
            tx.send(Msg::Line(e)).map_err(|_| ()).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        tx.send(Msg::Flush(ack)).map_err(|_| ()).unwrap();
        done.recv_timeout(Duration::from_secs(5)).unwrap();
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.lines().count(),
            n,
            "every line written before the flush answered"
        );
        assert!(text.lines().last().unwrap().contains("/299"), "{text}");
        let writes = out.writes.load(Ordering::SeqCst);
        assert!(
            writes <= n / 3,
            "{writes} writes for {n} lines arriving 1 ms apart (rounds of {BATCH_WAIT:?})"
        );
        drop(tx);
        w.join().unwrap();
    }

    #[test]
    fn time_is_rfc3339_utc() {
        let mut s = String::new();
        rfc3339(
            &mut s,
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_765_090_000_123),
        );
        assert_eq!(s, "2025-12-07T06:46:40.123Z");
    }

    #[test]
    fn json_and_text_lines() {
        let e = Entry {
            method: "GET".into(),
            path: "/a \"b\"".into(),
            status: 404,
            flag: Some(Flag::NoRoute),
            query: Some("x=1&api_key=abc&Token=t&page=2".into()),
            ..Default::default()
        };
        let fields = parse_fields("method,path,query,status,response_flags,route").unwrap();
        let mut s = String::new();
        format_line(&mut s, &e, &fields, Format::Json);
        assert_eq!(
            s,
            "{\"method\":\"GET\",\"path\":\"/a \\\"b\\\"\",\"query\":\"x=1&api_key=REDACTED&Token=REDACTED&page=2\",\"status\":404,\"response_flags\":\"NR\",\"route\":null}\n"
        );
        s.clear();
        format_line(&mut s, &e, &fields, Format::Text);
        assert_eq!(
            s,
            "method=GET path=\"/a \\\"b\\\"\" query=\"x=1&api_key=REDACTED&Token=REDACTED&page=2\" status=404 response_flags=NR route=-\n"
        );
        assert!(parse_fields("method,cookie").is_err());
        assert!(!default_fields().contains(&Field::Query));
    }
}
