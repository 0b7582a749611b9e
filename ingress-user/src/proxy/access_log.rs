//! The log phase's access log: one line per request on either transport
//! (and per TLS pass-through connection), formatted on the request's task
//! and written by a thread of its own. The queue between them is bounded:
//! when the writer cannot keep up (a stuck stdout), lines are counted as
//! dropped and requests never wait.
//!
//! Formats: ingress-nginx's default `upstreaminfo` line, field for field,
//! and JSON (one object per line, stable field names, the same values).

use crate::model::config::{LogPiece, LogTemplate, LogVar};

use std::{
    io::Write as _,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Lines queued for the writer by default.
pub const DEFAULT_BUFFER: usize = 8192;

pub use crate::config::AccessLogFormat as Format;

/// One upstream attempt of a request.
#[derive(Clone, Debug)]
pub struct Try {
    pub addr: String,
    /// `None`: no response (refused, timed out, broken).
    pub status: Option<u16>,
    pub response_length: u64,
    pub response_time: Duration,
}

/// What the log phase knows of a finished request.
#[derive(Debug, Default)]
pub struct Record {
    pub client: Option<IpAddr>,
    pub remote_user: Option<Box<str>>,
    pub method: Box<str>,
    /// The request target as sent.
    pub target: Box<str>,
    pub version: &'static str,
    pub host: Option<Box<str>>,
    pub referer: Option<Box<str>>,
    pub user_agent: Option<Box<str>>,
    pub request_id: Option<Box<str>>,
    pub request_length: u64,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub request_time: Duration,
    /// ingress-nginx's `$proxy_upstream_name`: `NAMESPACE-SERVICE-PORT`.
    pub upstream_name: Option<Box<str>>,
    /// The canary's, when the rule has one (`$proxy_alternative_upstream_name`).
    pub alternative_upstream_name: Option<Box<str>>,
    pub tries: Vec<Try>,
    /// The route's Ingress (or route) and Service: `$namespace`,
    /// `$ingress_name`, `$service_name`, `$service_port`.
    pub route: Option<(
        Arc<crate::model::NamespacedName>,
        Arc<crate::model::Backend>,
    )>,
    /// The values of the template's `$http_NAME` headers, in its order.
    pub headers: Vec<Option<Box<str>>>,
}

impl Record {
    /// The start of a record from a request's fields.
    pub fn request<'a>(
        client: IpAddr,
        method: &str,
        target: &str,
        version: &'static str,
        header: &dyn Fn(&str) -> Option<&'a [u8]>,
    ) -> Self {
        let text = |name: &str| {
            header(name).map(|v| String::from_utf8_lossy(v).into_owned().into_boxed_str())
        };
        Record {
            client: Some(client),
            method: method.into(),
            target: target.into(),
            version,
            host: text("host"),
            referer: text("referer"),
            user_agent: text("user-agent"),
            request_id: text("x-request-id"),
            ..Record::default()
        }
    }
}

impl Record {
    /// Keeps the request headers the template's `$http_NAME` variables name.
    pub fn keep_headers<'a>(
        &mut self,
        template: &LogTemplate,
        header: &dyn Fn(&str) -> Option<&'a [u8]>,
    ) {
        self.headers = template
            .headers
            .iter()
            .map(|name| header(name).map(|v| String::from_utf8_lossy(v).into()))
            .collect();
    }

    /// One more upstream try (its response length is filled in once the
    /// body has passed).
    pub fn tried(&mut self, addr: &dyn std::fmt::Display, status: u16, took: Duration) {
        self.tries.push(Try {
            addr: addr.to_string(),
            status: Some(status),
            response_length: 0,
            response_time: took,
        });
    }
}

/// `NAMESPACE-SERVICE-PORT`, as ingress-nginx names upstreams.
pub fn upstream_name(backend: &crate::model::Backend) -> Box<str> {
    format!(
        "{}-{}-{}",
        backend.service.namespace, backend.service.name, backend.port
    )
    .into_boxed_str()
}

pub struct AccessLog {
    format: Format,
    /// The ConfigMap's `log-format-upstream`, when it sets one.
    template: arc_swap::ArcSwapOption<LogTemplate>,
    shared: Arc<Shared>,
    pub lines: AtomicU64,
    pub dropped: AtomicU64,
}

/// Lines waiting for the writer: appended under a short lock, taken in
/// batches. The writer is not woken per line (a wake-up per request cost
/// more than the line itself), but every `FLUSH_EVERY`, or at once when
/// `WAKE_AT` bytes wait.
struct Shared {
    pending: std::sync::Mutex<Pending>,
    /// A new output (`access-log-path`), taken by the writer before its
    /// next batch.
    next_out: std::sync::Mutex<Option<Box<dyn std::io::Write + Send>>>,
    wake: std::sync::Condvar,
    /// Lines held at most; more are dropped.
    max_lines: usize,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
}

const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
const WAKE_AT: usize = 256 * 1024;

thread_local! {
    /// Where this thread formats its lines.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// Starts the writer thread on `out` (stdout in the agent).
    pub fn start(
        format: Format,
        buffer: usize,
        out: Box<dyn std::io::Write + Send>,
    ) -> std::io::Result<Arc<Self>> {
        let shared = Arc::new(Shared {
            pending: std::sync::Mutex::new(Pending::default()),
            next_out: std::sync::Mutex::new(None),
            wake: std::sync::Condvar::new(),
            max_lines: buffer.max(1),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&writer, out))?;
        Ok(Arc::new(Self {
            format,
            template: arc_swap::ArcSwapOption::empty(),
            shared,
            lines: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Formats and queues one line; never waits for the writer.
    pub fn log(&self, r: &Record) {
        SCRATCH.with(|scratch| {
            let mut line = scratch.borrow_mut();
            line.clear();
            let template = self.template.load();
            match (template.as_deref(), self.format) {
                (Some(t), _) => render(t, r, SystemTime::now(), &mut line),
                (None, Format::Upstreaminfo) => upstreaminfo(r, SystemTime::now(), &mut line),
                (None, Format::Json) => json(r, SystemTime::now(), &mut line),
            }
            line.push(b'\n');
            let mut p = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if p.lines >= self.shared.max_lines {
                drop(p);
                self.dropped.fetch_add(1, Relaxed);
                return;
            }
            let before = p.bytes.len();
            p.bytes.extend_from_slice(&line);
            p.lines += 1;
            let crossed = before < WAKE_AT && p.bytes.len() >= WAKE_AT;
            drop(p);
            if crossed {
                self.shared.wake.notify_one();
            }
            self.lines.fetch_add(1, Relaxed);
        });
    }

    /// Lines go to `path` from the next batch on (`None` or `/dev/stdout`:
    /// stdout; `/dev/stderr`: stderr; else the file, appended to and
    /// created if missing). The file is opened here, so an error is the
    /// caller's to report; the output stays as it was then.
    pub fn set_output(&self, path: Option<&std::path::Path>) -> std::io::Result<()> {
        let out: Box<dyn std::io::Write + Send> = match path.and_then(|p| p.to_str()) {
            None | Some("/dev/stdout") => Box::new(std::io::stdout()),
            Some("/dev/stderr") => Box::new(std::io::stderr()),
            Some(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        *self
            .shared
            .next_out
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(out);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The request headers the current template's `$http_NAME` variables
    /// name: a request's record keeps their values.
    pub fn http_headers(&self) -> Option<Arc<LogTemplate>> {
        self.template.load_full().filter(|t| !t.headers.is_empty())
    }

    /// The ConfigMap's `log-format-upstream` from now on (`None`: the
    /// `--access-log` format).
    pub fn set_template(&self, template: Option<Arc<LogTemplate>>) {
        self.template.store(template);
    }

    /// A line for a TLS pass-through connection (ingress-nginx's stream
    /// log): client, time, the SNI, the pod, bytes each way, duration.
    pub fn log_stream(&self, s: &StreamRecord<'_>) {
        let r = Record {
            client: Some(s.client),
            method: "STREAM".into(),
            target: s.sni.into(),
            version: "TLS",
            host: Some(s.sni.into()),
            status: 200,
            body_bytes_sent: s.bytes_to_client,
            request_length: s.bytes_from_client,
            request_time: s.duration,
            upstream_name: Some(s.upstream_name.into()),
            tries: vec![Try {
                addr: s.upstream.to_string(),
                status: None,
                response_length: s.bytes_to_client,
                response_time: s.duration,
            }],
            ..Record::default()
        };
        self.log(&r);
    }
}

/// A finished TLS pass-through connection.
pub struct StreamRecord<'a> {
    pub client: IpAddr,
    pub sni: &'a str,
    pub upstream: std::net::SocketAddr,
    pub upstream_name: &'a str,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub duration: Duration,
}

fn write_lines(shared: &Shared, out: Box<dyn std::io::Write + Send>) {
    let mut out = out;
    let mut batch = Vec::new();
    loop {
        {
            let mut p = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.bytes.len() < WAKE_AT {
                p = shared
                    .wake
                    .wait_timeout(p, FLUSH_EVERY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut batch, &mut p.bytes);
            p.lines = 0;
        }
        // Lines queued before the switch go to the new output too.
        if let Some(next) = shared
            .next_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = out.flush();
            out = next;
        }
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
            // Keep a batch-sized buffer, not the largest one ever seen.
            batch.shrink_to(WAKE_AT);
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil((secs / 86_400) as i64);
    (y, m, d, secs % 86_400)
}

thread_local! {
    /// The last second formatted, and its text (one format per second).
    static TIME_LOCAL: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// nginx's `$time_local` (in UTC): `04/Dec/2026:17:10:00 +0000`.
pub fn time_local(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    TIME_LOCAL.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, format_time_local(t));
        }
        c.1.clone()
    })
}

fn format_time_local(t: SystemTime) -> String {
    let (y, m, d, s) = split_time(t);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// nginx's `$time_iso8601` (in UTC): `2026-12-04T17:10:00+00:00`.
pub fn time_iso8601(t: SystemTime) -> String {
    let (y, m, d, s) = split_time(t);
    format!(
        "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Seconds with millisecond resolution, as nginx prints times.
fn secs(d: Duration) -> String {
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// nginx escapes `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn push_escaped(out: &mut Vec<u8>, v: &str) {
    for &b in v.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

fn dash(v: Option<&str>) -> &str {
    match v {
        Some(v) if !v.is_empty() => v,
        _ => "-",
    }
}

/// The `$upstream_*` lists: one entry per try, `, `-separated, `-` when
/// there was none.
fn tries_field(r: &Record, each: impl Fn(&Try) -> String) -> String {
    if r.tries.is_empty() {
        return "-".into();
    }
    r.tries.iter().map(each).collect::<Vec<_>>().join(", ")
}

struct Fields {
    upstream_addr: String,
    upstream_response_length: String,
    upstream_response_time: String,
    upstream_status: String,
}

fn fields(r: &Record) -> Fields {
    Fields {
        upstream_addr: tries_field(r, |t| t.addr.clone()),
        upstream_response_length: tries_field(r, |t| t.response_length.to_string()),
        upstream_response_time: tries_field(r, |t| secs(t.response_time)),
        upstream_status: tries_field(r, |t| {
            t.status.map_or_else(|| "-".to_string(), |s| s.to_string())
        }),
    }
}

/// `$remote_addr - $remote_user [$time_local] "$request" $status
/// $body_bytes_sent "$http_referer" "$http_user_agent" $request_length
/// $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name]
/// $upstream_addr $upstream_response_length $upstream_response_time
/// $upstream_status $req_id`
pub fn upstreaminfo(r: &Record, now: SystemTime, out: &mut Vec<u8>) {
    let f = fields(r);
    let client = r
        .client
        .map_or_else(|| "-".into(), |c| c.to_canonical().to_string());
    let _ = write!(out, "{client} - ");
    push_escaped(out, dash(r.remote_user.as_deref()));
    let _ = write!(out, " [{}] \"", time_local(now));
    if r.method.is_empty() {
        // A head too malformed to read: nginx's `"-"`.
        out.push(b'-');
    } else {
        push_escaped(out, &r.method);
        out.push(b' ');
        push_escaped(out, &r.target);
        let _ = write!(out, " {}", r.version);
    }
    let _ = write!(out, "\" {} {} \"", r.status, r.body_bytes_sent);
    push_escaped(out, dash(r.referer.as_deref()));
    out.extend_from_slice(b"\" \"");
    push_escaped(out, dash(r.user_agent.as_deref()));
    let _ = write!(
        out,
        "\" {} {} [{}] [{}] {} {} {} {} ",
        r.request_length,
        secs(r.request_time),
        r.upstream_name.as_deref().unwrap_or(""),
        r.alternative_upstream_name.as_deref().unwrap_or(""),
        f.upstream_addr,
        f.upstream_response_length,
        f.upstream_response_time,
        f.upstream_status,
    );
    push_escaped(out, dash(r.request_id.as_deref()));
}

/// A line in the ConfigMap's `log-format-upstream`: its text as written,
/// each variable's value escaped as nginx does (`\xHH`), or for a JSON
/// string with `log-format-escape-json`. An empty value is `-`.
pub fn render(t: &LogTemplate, r: &Record, now: SystemTime, out: &mut Vec<u8>) {
    let f = fields(r);
    let (path, args) = r.target.split_once('?').unwrap_or((&r.target, ""));
    for piece in &t.pieces {
        let var = match piece {
            LogPiece::Text(text) => {
                out.extend_from_slice(text.as_bytes());
                continue;
            }
            LogPiece::Var(v) => v,
        };
        let value: String = match var {
            LogVar::RemoteAddr => r
                .client
                .map(|c| c.to_canonical().to_string())
                .unwrap_or_default(),
            LogVar::RemoteUser => r.remote_user.as_deref().unwrap_or("").into(),
            LogVar::TimeLocal => time_local(now),
            LogVar::TimeIso8601 => time_iso8601(now),
            LogVar::Msec => {
                let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                format!("{}.{:03}", d.as_secs(), d.subsec_millis())
            }
            LogVar::Request if r.method.is_empty() => String::new(),
            LogVar::Request => format!("{} {} {}", r.method, r.target, r.version),
            LogVar::RequestMethod => r.method.to_string(),
            LogVar::RequestUri => r.target.to_string(),
            LogVar::Uri => path.to_string(),
            LogVar::Args => args.to_string(),
            LogVar::ServerProtocol => r.version.to_string(),
            LogVar::Status => r.status.to_string(),
            LogVar::BodyBytesSent => r.body_bytes_sent.to_string(),
            LogVar::HttpReferer => r.referer.as_deref().unwrap_or("").into(),
            LogVar::HttpUserAgent => r.user_agent.as_deref().unwrap_or("").into(),
            LogVar::Host => r.host.as_deref().unwrap_or("").into(),
            LogVar::RequestLength => r.request_length.to_string(),
            LogVar::RequestTime => secs(r.request_time),
            LogVar::ProxyUpstreamName => r.upstream_name.as_deref().unwrap_or("").into(),
            LogVar::ProxyAlternativeUpstreamName => {
                r.alternative_upstream_name.as_deref().unwrap_or("").into()
            }
            LogVar::UpstreamAddr => f.upstream_addr.clone(),
            LogVar::UpstreamResponseLength => f.upstream_response_length.clone(),
            LogVar::UpstreamResponseTime => f.upstream_response_time.clone(),
            LogVar::UpstreamStatus => f.upstream_status.clone(),
            LogVar::ReqId => r.request_id.as_deref().unwrap_or("").into(),
            LogVar::Namespace => r
                .route
                .as_ref()
                .map(|(i, _)| i.namespace.clone())
                .unwrap_or_default(),
            LogVar::IngressName => r
                .route
                .as_ref()
                .map(|(i, _)| i.name.clone())
                .unwrap_or_default(),
            LogVar::ServiceName => r
                .route
                .as_ref()
                .map(|(_, b)| b.service.name.clone())
                .unwrap_or_default(),
            LogVar::ServicePort => r
                .route
                .as_ref()
                .map(|(_, b)| b.port.clone())
                .unwrap_or_default(),
            LogVar::HttpHeader(i) => r
                .headers
                .get(usize::from(*i))
                .and_then(|v| v.as_deref())
                .unwrap_or("")
                .into(),
        };
        let value = if value.is_empty() { "-" } else { &value };
        if t.escape_json {
            let quoted = serde_json::to_string(value).unwrap_or_default();
            out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
        } else {
            push_escaped(out, value);
        }
    }
}

/// One JSON object with the same values under stable names.
pub fn json(r: &Record, now: SystemTime, out: &mut Vec<u8>) {
    let f = fields(r);
    let s = |v: Option<&str>| serde_json::Value::String(dash(v).to_string());
    let client = r.client.map(|c| c.to_canonical().to_string());
    let obj = serde_json::json!({
        "time": time_iso8601(now),
        "remote_addr": s(client.as_deref()),
        "remote_user": s(r.remote_user.as_deref()),
        "request_method": &*r.method,
        "request_uri": &*r.target,
        "server_protocol": r.version,
        "host": s(r.host.as_deref()),
        "status": r.status,
        "body_bytes_sent": r.body_bytes_sent,
        "http_referer": s(r.referer.as_deref()),
        "http_user_agent": s(r.user_agent.as_deref()),
        "request_length": r.request_length,
        "request_time": r.request_time.as_secs_f64(),
        "proxy_upstream_name": r.upstream_name.as_deref().unwrap_or(""),
        "proxy_alternative_upstream_name": r.alternative_upstream_name.as_deref().unwrap_or(""),
        "upstream_addr": f.upstream_addr,
        "upstream_response_length": f.upstream_response_length,
        "upstream_response_time": f.upstream_response_time,
        "upstream_status": f.upstream_status,
        "req_id": s(r.request_id.as_deref()),
        "namespace": s(r.route.as_ref().map(|(i, _)| i.namespace.as_str())),
        "ingress_name": s(r.route.as_ref().map(|(i, _)| i.name.as_str())),
        "service_name": s(r.route.as_ref().map(|(_, b)| b.service.name.as_str())),
        "service_port": s(r.route.as_ref().map(|(_, b)| b.port.as_str())),
    });
    let _ = serde_json::to_writer(&mut *out, &obj);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn record() -> Record {
        Record {
            client: Some("192.0.2.7".parse().unwrap()),
            method: "GET".into(),
            target: "/tea?x=\"1\"".into(),
            version: "HTTP/1.1",
            host: Some("cafe.example.com".into()),
            user_agent: Some("curl/8.0".into()),
            request_id: Some("abc".into()),
            request_length: 78,
            status: 200,
            body_bytes_sent: 12,
            request_time: Duration::from_millis(5),
            upstream_name: Some("default-tea-svc-80".into()),
            tries: vec![
                Try {
                    addr: "10.244.1.2:80".into(),
                    status: None,
                    response_length: 0,
                    response_time: Duration::from_millis(1),
                },
                Try {
                    addr: "10.244.1.3:80".into(),
                    status: Some(200),
                    response_length: 12,
                    response_time: Duration::from_millis(3),
                },
            ],
            ..Record::default()
        }
    }

    #[test]
    fn upstreaminfo_is_ingress_nginx_s_line() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_404_200);
        let mut out = Vec::new();
        upstreaminfo(&record(), t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - - [04/Dec/2026:17:10:00 +0000] \"GET /tea?x=\\x221\\x22 HTTP/1.1\" 200 12 \"-\" \"curl/8.0\" \
             78 0.005 [default-tea-svc-80] [] 10.244.1.2:80, 10.244.1.3:80 0, 12 0.001, 0.003 -, 200 abc"
        );
    }

    #[test]
    fn json_has_the_same_values_under_stable_names() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_404_200);
        let mut out = Vec::new();
        json(&record(), t, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2026-12-04T17:10:00+00:00");
        assert_eq!(v["request_uri"], "/tea?x=\"1\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["upstream_addr"], "10.244.1.2:80, 10.244.1.3:80");
        assert_eq!(v["upstream_status"], "-, 200");
        assert_eq!(v["http_referer"], "-");
        assert_eq!(v["proxy_upstream_name"], "default-tea-svc-80");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_791), (2026, 12, 4));
    }

    #[test]
    fn a_stuck_writer_drops_lines_instead_of_blocking() {
        struct Stuck;
        impl std::io::Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = AccessLog::start(Format::Upstreaminfo, 4, Box::new(Stuck)).unwrap();
        let started = Instant::now();
        for _ in 0..100 {
            log.log(&record());
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            log.dropped.load(Relaxed) >= 90,
            "{}",
            log.dropped.load(Relaxed)
        );
    }
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn templates_render_their_variables_escaped() {
        let r = Record {
            client: Some("192.0.2.7".parse().unwrap()),
            method: "GET".into(),
            target: "/a\"b?x=1".into(),
            version: "HTTP/1.1",
            status: 404,
            ..Record::default()
        };
        let t = UNIX_EPOCH + Duration::from_secs(1_796_404_200);
        let json = LogTemplate::parse(
            "{\"ip\": \"$remote_addr\", \"uri\": \"$uri\", \"args\": \"$args\", \"s\": $status, \"up\": \"$upstream_addr\"}",
            true,
        )
        .unwrap();
        let mut out = Vec::new();
        render(&json, &r, t, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["uri"], "/a\"b");
        assert_eq!(v["args"], "x=1");
        assert_eq!(v["s"], 404);
        assert_eq!(v["up"], "-");
        let plain = LogTemplate::parse(
            "$remote_addr [$time_local] \"$request\" $remote_user",
            false,
        )
        .unwrap();
        let mut out = Vec::new();
        render(&plain, &r, t, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 [04/Dec/2026:17:10:00 +0000] \"GET /a\\x22b?x=1 HTTP/1.1\" -"
        );
    }
}
