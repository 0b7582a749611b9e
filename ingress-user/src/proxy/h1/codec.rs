//! HTTP/1.1 heads and body framing for the fast path (RFC 9112): what a
//! head says about framing and hop-by-hop fields, the heads sent on, and a
//! chunked-body scanner that finds where a body ends while the bytes pass
//! through unchanged.

use crate::model::header_rules::{Edits, HeaderEdit};
use std::{io::Write as _, net::IpAddr};

use crate::model::put_decimal;

/// Header fields per head, as hyper's default: more is 431 (request) or 502
/// (response).
pub const MAX_HEADERS: usize = 100;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// The header fields the proxy acts on; everything else passes unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Te,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedHost,
    XRequestId,
    Server,
    Date,
    /// Replaced by the proxy's own value (X-Real-IP, X-Forwarded-Proto/Port).
    Replaced,
    /// Describes one hop only (RFC 9110 §7.6.1).
    HopByHop,
    Other,
}

pub fn classify(name: &[u8]) -> Field {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 if is("te") => Field::Te,
        4 if is("host") => Field::Host,
        4 if is("date") => Field::Date,
        6 if is("expect") => Field::Expect,
        6 if is("server") => Field::Server,
        7 if is("upgrade") => Field::Upgrade,
        7 if is("trailer") => Field::HopByHop,
        9 if is("x-real-ip") => Field::Replaced,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::HopByHop,
        12 if is("x-request-id") => Field::XRequestId,
        14 if is("content-length") => Field::ContentLength,
        15 if is("x-forwarded-for") => Field::XForwardedFor,
        16 if is("proxy-connection") => Field::HopByHop,
        16 if is("x-forwarded-host") => Field::XForwardedHost,
        16 if is("x-forwarded-port") => Field::Replaced,
        17 if is("transfer-encoding") => Field::TransferEncoding,
        17 if is("x-forwarded-proto") => Field::Replaced,
        18 if is("proxy-authenticate") => Field::HopByHop,
        19 if is("proxy-authorization") => Field::HopByHop,
        _ => Field::Other,
    }
}

/// Comma-separated list elements, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Why a head cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// 400: malformed or ambiguous.
    Bad(&'static str),
    /// 501: a transfer coding other than chunked.
    NotImplemented,
}

/// What a request head says, beyond method and target.
#[derive(Debug)]
pub struct RequestInfo<'b> {
    /// Each field's kind, by position (classified once).
    fields: [Field; MAX_HEADERS],
    pub host: Option<&'b [u8]>,
    pub framing: Framing,
    /// Connection: close, or framing that is only safe for this one request.
    pub close: bool,
    /// Connection: upgrade with an Upgrade field.
    pub upgrade: bool,
    pub expect: bool,
    /// TE: trailers (the one TE value a proxy forwards; gRPC needs it).
    pub te_trailers: bool,
    pub has_request_id: bool,
    /// More field names the Connection field declares hop-by-hop.
    pub connection_names: Vec<&'b [u8]>,
}

/// Reads framing and hop-by-hop information from a request's fields.
pub fn analyze_request<'b>(headers: &[httparse::Header<'b>]) -> Result<RequestInfo<'b>, HeadError> {
    let mut info = RequestInfo {
        fields: [Field::Other; MAX_HEADERS],
        host: None,
        framing: Framing::Empty,
        close: false,
        upgrade: false,
        expect: false,
        te_trailers: false,
        has_request_id: false,
        connection_names: Vec::new(),
    };
    // Every field is classified; more than the analysis holds is refused,
    // never cut short (a framing field past the cut would go unseen).
    if headers.len() > MAX_HEADERS {
        return Err(HeadError::Bad("too many header fields"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut has_upgrade_field = false;
    let mut upgrade_token = false;
    for (h, kind) in headers.iter().zip(info.fields.iter_mut()) {
        *kind = classify(h.name.as_bytes());
        match *kind {
            Field::Host => {
                if info.host.is_some() {
                    return Err(HeadError::Bad("more than one Host"));
                }
                info.host = Some(h.value);
            }
            Field::ContentLength => {
                let n = parse_length(h.value).ok_or(HeadError::Bad("invalid Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Bad("conflicting Content-Lengths"));
                }
                length = Some(n);
            }
            Field::TransferEncoding => {
                for t in tokens(h.value) {
                    if chunked {
                        // Something after chunked: the body's end is unknowable.
                        return Err(HeadError::Bad("chunked is not the final transfer coding"));
                    }
                    if t.eq_ignore_ascii_case(b"chunked") {
                        chunked = true;
                    } else {
                        return Err(HeadError::NotImplemented);
                    }
                }
                if !chunked {
                    return Err(HeadError::Bad("empty Transfer-Encoding"));
                }
            }
            Field::Connection => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        info.close = true;
                    } else if t.eq_ignore_ascii_case(b"upgrade") {
                        upgrade_token = true;
                    } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                        info.connection_names.push(t);
                    }
                }
            }
            Field::Te => {
                info.te_trailers |= tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"trailers"));
            }
            Field::Upgrade => has_upgrade_field = true,
            Field::Expect => info.expect = true,
            Field::XRequestId => info.has_request_id = true,
            _ => {}
        }
    }
    info.upgrade = upgrade_token && has_upgrade_field;
    info.framing = if chunked {
        // Both Content-Length and Transfer-Encoding: a smuggling attempt
        // (or a broken client) either way; nginx answers 400, and so do we
        // rather than guess which framing the pod will believe.
        if length.is_some() {
            return Err(HeadError::Bad("both Content-Length and Transfer-Encoding"));
        }
        Framing::Chunked
    } else {
        match length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    Ok(info)
}

/// 1*DIGIT, at most 19 digits (fits u64).
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn named_by_connection(names: &[&[u8]], name: &[u8]) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// What the proxy adds about the client, formatted once per connection.
pub struct Forwarded {
    ip: [u8; 48],
    ip_len: usize,
    port: [u8; 5],
    port_len: usize,
    tls: bool,
    /// `compute-full-forwarded-for`: the client's list, then this address
    /// (the connection's client).
    append: Option<([u8; 48], usize)>,
    /// `use-forwarded-headers`: the client's X-Forwarded-Proto/Host/Port
    /// are passed on when present.
    pass: bool,
    /// `generate-request-id: "false"`.
    no_request_id: bool,
}

fn ip_text(ip: IpAddr) -> ([u8; 48], usize) {
    let mut buf = [0u8; 48];
    let mut c = std::io::Cursor::new(&mut buf[..]);
    // An IP address is at most 45 characters: the write cannot fail.
    let _ = write!(c, "{}", ip.to_canonical());
    let len = c.position() as usize;
    (buf, len)
}

impl Forwarded {
    pub fn new(
        down: &super::super::headers::Downstream,
        rules: &super::super::headers::ClientAddress,
    ) -> Self {
        let mut f = Self::from_parts(down.client.ip(), down.local.port(), down.tls);
        if rules.compute_full_forwarded_for {
            f.append = Some(ip_text(down.origin.ip()));
        }
        f.pass = rules.use_forwarded_headers;
        f.no_request_id = rules.no_request_id;
        f
    }

    pub fn from_parts(client: IpAddr, local_port: u16, tls: bool) -> Self {
        let (ip, ip_len) = ip_text(client);
        let mut port = [0u8; 5];
        let port_len = put_decimal(&mut port, u64::from(local_port));
        Self {
            ip,
            ip_len,
            port,
            port_len,
            tls,
            append: None,
            pass: false,
            no_request_id: false,
        }
    }

    fn ip(&self) -> &[u8] {
        &self.ip[..self.ip_len]
    }
}

fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 20];
    let len = put_decimal(&mut tmp, n);
    out.extend_from_slice(&tmp[..len]);
}

/// Writes the request head sent upstream: same method, target and end-to-end
/// fields; hop-by-hop ones out; X-Forwarded-* and X-Real-IP set by us;
/// framing re-declared.
pub fn write_request_head(
    out: &mut Vec<u8>,
    req: &httparse::Request<'_, '_>,
    info: &RequestInfo<'_>,
    fwd: &Forwarded,
    normalized: Option<&str>,
    request_id: Option<&[u8; 32]>,
    edit: Option<&HeaderEdit>,
) {
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return;
    };
    let path = normalized.unwrap_or(path);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_xff = false;
    for (h, kind) in req.headers.iter().zip(info.fields) {
        let name = h.name.as_bytes();
        match kind {
            // What routes the request and traces it: the Connection
            // header cannot take it away from the pod.
            Field::Host | Field::XRequestId => put_field(out, name, h.value),
            Field::Expect | Field::Server | Field::Date | Field::Other
                if !named_by_connection(&info.connection_names, name)
                    && !edit.is_some_and(|e| e.drops(name)) =>
            {
                put_field(out, name, h.value);
            }
            Field::XForwardedFor => has_xff = true,
            _ => {}
        }
    }
    // X-Forwarded-For: the client; with `compute-full-forwarded-for`, the
    // client's own fields joined, then the connection's client appended.
    let mut xff_prev = false;
    if let Some((append, append_len)) = &fwd.append {
        if has_xff {
            for (h, kind) in req.headers.iter().zip(info.fields) {
                let value = h.value.trim_ascii();
                if kind == Field::XForwardedFor && !value.is_empty() {
                    out.extend_from_slice(if xff_prev {
                        b", "
                    } else {
                        b"X-Forwarded-For: "
                    });
                    out.extend_from_slice(value);
                    xff_prev = true;
                }
            }
        }
        out.extend_from_slice(if xff_prev {
            b", "
        } else {
            b"X-Forwarded-For: "
        });
        out.extend_from_slice(&append[..*append_len]);
    } else {
        out.extend_from_slice(b"X-Forwarded-For: ");
        out.extend_from_slice(fwd.ip());
    }
    out.extend_from_slice(b"\r\nX-Real-IP: ");
    out.extend_from_slice(fwd.ip());
    out.extend_from_slice(b"\r\n");
    // `use-forwarded-headers`: the client's own values, when it sent them.
    let passed = |name: &str| {
        fwd.pass
            .then(|| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            })
            .flatten()
    };
    match passed("x-forwarded-proto") {
        Some(v) => put_field(out, b"X-Forwarded-Proto", v),
        None => out.extend_from_slice(if fwd.tls {
            b"X-Forwarded-Proto: https\r\n"
        } else {
            b"X-Forwarded-Proto: http\r\n"
        }),
    }
    if let Some(host) = passed("x-forwarded-host").or(info.host) {
        put_field(out, b"X-Forwarded-Host", host);
    }
    match passed("x-forwarded-port") {
        Some(v) => put_field(out, b"X-Forwarded-Port", v),
        None => {
            out.extend_from_slice(b"X-Forwarded-Port: ");
            out.extend_from_slice(&fwd.port[..fwd.port_len]);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !info.has_request_id && !fwd.no_request_id {
        out.extend_from_slice(b"X-Request-ID: ");
        match request_id {
            Some(id) => out.extend_from_slice(id),
            None => out.extend_from_slice(&crate::proxy::headers::request_id_hex()),
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some(e) = edit {
        e.write_h1(out);
    }
    if info.te_trailers {
        out.extend_from_slice(b"TE: trailers\r\n");
    }
    match info.framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Empty | Framing::Close => {}
    }
    out.extend_from_slice(b"\r\n");
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What a response head says.
#[derive(Debug)]
pub struct ResponseInfo<'b> {
    fields: [Field; MAX_HEADERS],
    pub framing: Framing,
    /// The pod will close the connection after this response.
    pub close: bool,
    pub has_server: bool,
    pub has_date: bool,
    connection_names: Vec<&'b [u8]>,
    /// Transfer-Encoding with chunked last: kept, any Content-Length dropped.
    chunked: bool,
}

/// Reads a response head's framing (RFC 9112 §6.3) for a request that was
/// (`head_request`) or was not a HEAD.
pub fn analyze_response<'b>(
    status: u16,
    head_request: bool,
    headers: &[httparse::Header<'b>],
) -> Result<ResponseInfo<'b>, &'static str> {
    if headers.len() > MAX_HEADERS {
        return Err("too many header fields");
    }
    let mut length = None;
    let mut coded = false;
    let mut chunked = false;
    let mut info = ResponseInfo {
        fields: [Field::Other; MAX_HEADERS],
        framing: Framing::Empty,
        close: false,
        has_server: false,
        has_date: false,
        connection_names: Vec::new(),
        chunked: false,
    };
    for (h, kind) in headers.iter().zip(info.fields.iter_mut()) {
        *kind = classify(h.name.as_bytes());
        match *kind {
            Field::ContentLength => {
                let n = parse_length(h.value).ok_or("invalid Content-Length from the pod")?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Lengths from the pod");
                }
                length = Some(n);
            }
            Field::TransferEncoding => {
                for t in tokens(h.value) {
                    coded = true;
                    chunked = t.eq_ignore_ascii_case(b"chunked");
                }
            }
            Field::Connection => {
                for t in tokens(h.value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        info.close = true;
                    } else if !t.eq_ignore_ascii_case(b"keep-alive") {
                        info.connection_names.push(t);
                    }
                }
            }
            Field::Server => info.has_server = true,
            Field::Date => info.has_date = true,
            _ => {}
        }
    }
    info.chunked = chunked;
    info.framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if coded {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if info.framing == Framing::Close {
        info.close = true;
    }
    Ok(info)
}

/// Writes the response head sent to the client: the pod's status and
/// end-to-end fields, hop-by-hop ones out, `Server` and `Date` when missing,
/// and `Connection: close` when this is the connection's last response.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    info: &ResponseInfo<'_>,
    close: bool,
    hsts: Option<&[u8]>,
    edits: Option<&Edits>,
) {
    let code = resp.code.unwrap_or(502);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (h, kind) in resp.headers.iter().zip(info.fields) {
        let name = h.name.as_bytes();
        let keep = match kind {
            Field::Connection | Field::HopByHop | Field::Te | Field::Upgrade => false,
            // With chunked framing any Content-Length is wrong. Without,
            // it is the body's framing: Connection cannot remove it.
            Field::ContentLength => !info.chunked,
            // `hsts`: ours replaces the pod's (nginx's more_set_headers).
            _ if hsts.is_some() && name.eq_ignore_ascii_case(b"strict-transport-security") => false,
            _ if edits.is_some_and(|e| e.drops_response(name)) => false,
            _ => !named_by_connection(&info.connection_names, name),
        };
        if keep {
            match edits.and_then(|e| e.rewritten_response(name, h.value)) {
                Some(v) => put_field(out, name, &v),
                None => put_field(out, name, h.value),
            }
        }
    }
    if let Some(v) = hsts {
        put_field(out, b"Strict-Transport-Security", v);
    }
    if let Some(e) = edits {
        e.write_response_h1(out);
    }
    if !info.has_server {
        put_field(
            out,
            b"Server",
            super::super::headers::server_value().as_bytes(),
        );
    }
    if !info.has_date {
        put_date(out);
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A response the proxy makes itself (errors, redirects).
pub fn write_local_response(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    body: &[u8],
    field: Option<(&[u8], &[u8])>,
    head_request: bool,
    close: bool,
    hsts: Option<&[u8]>,
) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        super::super::headers::server_value()
    );
    put_date(out);
    if let Some((name, value)) = field {
        put_field(out, name, value);
    }
    if let Some(v) = hsts {
        put_field(out, b"Strict-Transport-Security", v);
    }
    let _ = write!(
        out,
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        body.len()
    );
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body);
    }
}

/// `Date: <IMF-fixdate>`, formatted once per second per thread.
fn put_date(out: &mut Vec<u8>) {
    use std::{cell::RefCell, time::SystemTime};
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(secs, text)| {
        if *secs != now {
            *secs = now;
            *text = imf_fixdate(now);
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    });
}

/// Seconds since the epoch as "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7).
pub fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut buf = [0u8; 29];
    let mut c = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(
        c,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    buf
}

/// Longest chunk-size line (size and extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Follows a chunked body (RFC 9112 §7.1) byte by byte without changing it:
/// where it ends, and how much data it carried. Strict: CRLF line ends, hex
/// sizes that fit in 64 bits, no control characters in extensions or
/// trailers.
#[derive(Clone, Debug)]
pub struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    line: usize,
    trailers: usize,
    decoded: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            trailers: 0,
            decoded: 0,
        }
    }
}

impl Chunked {
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes seen so far (without framing).
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Scans `buf`; returns how many of its bytes belong to the body (all of
    /// them, or up to the end of the body).
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, &'static str> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            let b = buf[i];
            match self.state {
                State::Data => {
                    let n = (buf.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    self.decoded += n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size => {
                    if let Some(d) = (b as char).to_digit(16) {
                        if self.digits == 16 {
                            return Err("chunk size too large");
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.digits += 1;
                    } else if self.digits == 0 {
                        return Err("invalid chunk size");
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = State::Ext;
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else {
                        return Err("invalid chunk size");
                    }
                    self.line += 1;
                }
                State::Ext => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b.is_ascii_control() && b != b'\t' {
                        return Err("invalid chunk extension");
                    }
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err("chunk extension too long");
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err("chunk size line without CRLF");
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                    self.digits = 0;
                    self.line = 0;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err("chunk data longer than its size");
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err("chunk data without CRLF");
                    }
                    self.state = State::Size;
                }
                State::TrailerStart | State::Trailer => {
                    if b == b'\r' {
                        self.state = if self.state == State::TrailerStart {
                            State::EndLf
                        } else {
                            State::TrailerLf
                        };
                    } else if b.is_ascii_control() && b != b'\t' {
                        return Err("invalid trailer field");
                    } else {
                        self.state = State::Trailer;
                    }
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err("trailer section too large");
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err("trailer line without CRLF");
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err("chunked body without final CRLF");
                    }
                    self.state = State::Done;
                }
                State::Done => unreachable!("the loop stops at Done"),
            }
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests;
