//! Safe snippets: ingress-nginx's `configuration-snippet`, `server-snippet`
//! and `auth-snippet` read as nginx configuration, of which only a closed
//! set of directives is carried out, each as a typed rule:
//!
//! - header edits: `more_set_headers`, `more_clear_headers`,
//!   `more_set_input_headers`, `more_clear_input_headers`, `add_header`,
//!   `proxy_set_header`, `proxy_hide_header`;
//! - the rewrite phase: `return`, `rewrite`, `set`, and `if` around them.
//!
//! Anything else (Lua, `proxy_pass`, `location`, `include`, any other
//! directive), a variable outside a fixed list, or a header the agent owns
//! refuses the whole snippet with a message naming it: a snippet is never
//! half-applied.
//!
//! Meaning follows nginx: the rewrite directives run in order and stop at
//! `return`, at a `rewrite` with a flag, or at `break`; header directives are
//! declarative (those at the top level always apply, those in an `if` when
//! its condition held) and their values are read after the rewrite phase.

use std::{net::IpAddr, sync::Arc};

use http::{HeaderMap, HeaderName, HeaderValue};

/// Which annotation a snippet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `server-snippet`: runs before the location's.
    Server,
    /// `configuration-snippet`.
    Location,
    /// `auth-snippet`: edits the request to the auth service only.
    Auth,
}

/// The longest snippet read (nginx has no limit; annotations have 256 KiB
/// in all): bounds the parser's work.
const MAX_LEN: usize = 32 * 1024;

/// The rewrite directives run at most this many times per request (nginx
/// stops a loop of `last` at 10 cycles; here there is no loop, but a bound
/// keeps the cost of a request fixed).
const MAX_STATEMENTS: usize = 512;

/// A parsed snippet, ready to run per request.
#[derive(Debug)]
pub struct Snippet {
    source: Box<str>,
    body: Vec<Stmt>,
    /// Names of the `set` variables, indexed by `Var::Set`.
    vars: Vec<Box<str>>,
    /// Number of `if` blocks (their ids are 0..ifs).
    ifs: usize,
    /// Whether it has any rewrite-phase directive (else only headers).
    rewrites: bool,
}

/// Two snippets are equal when they were read from the same text (the
/// configuration is compared on every change).
impl PartialEq for Snippet {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Snippet {}

#[derive(Debug)]
enum Stmt {
    /// Request fields set (an empty value removes one).
    SetRequest(Vec<(HeaderName, Template)>),
    ClearRequest(Vec<NamePattern>),
    /// Response fields set (an empty value removes one).
    SetResponse(Vec<(HeaderName, Template)>),
    ClearResponse(Vec<NamePattern>),
    /// `add_header`: appended to 2xx and 3xx responses, or to any with
    /// `always`.
    AddResponse(HeaderName, Template, bool),
    Return(u16, Option<Template>),
    Rewrite(Box<Rewrite>),
    Set(usize, Template),
    Break,
    If(usize, Cond, Vec<Stmt>),
}

#[derive(Debug)]
struct Rewrite {
    regex: regex::Regex,
    replacement: Template,
    flag: Flag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    /// No flag: the next rewrite directives run on the new path.
    None,
    /// `last` and `break`: the new path goes to this rule's pods.
    Break,
    Redirect,
    Permanent,
}

#[derive(Debug)]
enum Cond {
    /// `($var)`: not empty and not "0".
    Set(Template),
    Eq(Template, Box<str>, bool),
    Match(Template, regex::Regex, bool),
}

/// A field name, or a prefix of names (`X-Debug-*`).
#[derive(Debug, Clone)]
enum NamePattern {
    Name(HeaderName),
    Prefix(Box<str>),
}

#[derive(Debug, Clone)]
struct Template(Vec<Piece>);

#[derive(Debug, Clone)]
enum Piece {
    Text(Box<str>),
    Var(Var),
}

/// The variables a snippet may use.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    RequestMethod,
    Host,
    /// The normalised path (after rewrites so far).
    Uri,
    /// Path and query as the client sent them.
    RequestUri,
    Args,
    Arg(Box<str>),
    /// `$http_NAME` (lowercase, `-` for `_`).
    Header(Box<str>),
    Cookie(Box<str>),
    RemoteAddr,
    Scheme,
    /// `$1`…`$9` of the last regex that matched.
    Capture(usize),
    /// A `set` variable.
    Set(usize),
}

/// What a snippet may read of a request.
pub struct Input<'a, 'h> {
    pub method: &'a str,
    /// The Host as sent (for redirects) and normalised (for `$host`).
    pub host: &'a str,
    /// The normalised path.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub request_uri: &'a str,
    pub client: IpAddr,
    pub tls: bool,
    pub header: &'a dyn Fn(&str) -> Option<&'h [u8]>,
    pub cookie: &'a dyn Fn(&str) -> Option<&'h [u8]>,
}

/// What running a snippet decided for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Answer without asking the pod: status, and the body (or the
    /// Location of a 3xx).
    pub reply: Option<(u16, Vec<u8>)>,
    /// The path and query the pod gets instead (`rewrite`).
    pub target: Option<String>,
    pub request: Edit,
    pub response: Edit,
}

/// Header edits one request's snippet decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edit {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub clear: Vec<NameOrPrefix>,
    /// `add_header`, and whether `always`.
    pub add: Vec<(HeaderName, HeaderValue, bool)>,
}

/// A name, or a prefix ending in `*` in the snippet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrPrefix {
    Name(HeaderName),
    Prefix(Box<str>),
}

impl Edit {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.clear.is_empty() && self.add.is_empty()
    }

    /// Carries the edit out on a message's fields; `status`: the
    /// response's (for `add_header`), `None` for a request.
    pub fn apply(&self, headers: &mut HeaderMap, status: Option<u16>) {
        for c in &self.clear {
            match c {
                NameOrPrefix::Name(n) => {
                    headers.remove(n);
                }
                NameOrPrefix::Prefix(p) => {
                    let gone: Vec<HeaderName> = headers
                        .keys()
                        .filter(|n| n.as_str().starts_with(&**p))
                        .cloned()
                        .collect();
                    for n in gone {
                        headers.remove(n);
                    }
                }
            }
        }
        for (name, value) in &self.set {
            if value.is_empty() {
                headers.remove(name);
            } else {
                headers.insert(name.clone(), value.clone());
            }
        }
        // nginx's `add_header` without `always`: 200, 201, 204, 206, 301,
        // 302, 303, 304, 307 and 308 only.
        let success = status
            .is_none_or(|s| matches!(s, 200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308));
        for (name, value, always) in &self.add {
            if *always || success {
                headers.append(name.clone(), value.clone());
            }
        }
    }
}

impl Snippet {
    /// Reads `src` as a snippet of `scope`; `Err` names what is refused
    /// and where.
    pub fn parse(src: &str, scope: Scope) -> Result<Self, String> {
        if src.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        let toks = lex(src)?;
        // Variables `set` anywhere may be used anywhere, as in nginx.
        let mut vars: Vec<Box<str>> = Vec::new();
        for w in toks.windows(2) {
            if let (Tok::Word(d, false, _), Tok::Word(v, _, line)) = (&w[0].0, &w[1].0)
                && d == "set"
                && w[0].1 == *line
            {
                let Some(name) = v.strip_prefix('$').filter(|n| valid_var_name(n)) else {
                    return Err(format!("line {line}: set needs a $variable, not {v:?}"));
                };
                if known_var(name).is_some() {
                    return Err(format!(
                        "line {line}: set ${name}: a variable of the request cannot be changed"
                    ));
                }
                if !vars.iter().any(|x| **x == *name) {
                    vars.push(name.into());
                }
            }
        }
        let mut p = Parser {
            toks: &toks,
            at: 0,
            vars: &vars,
            scope,
            ifs: 0,
            rewrites: false,
            statements: 0,
        };
        let body = p.block(false)?;
        if p.at != toks.len() {
            return Err(format!("line {}: an unexpected \"}}\"", toks[p.at].1));
        }
        Ok(Snippet {
            source: src.into(),
            body,
            ifs: p.ifs,
            rewrites: p.rewrites,
            vars,
        })
    }

    /// Whether the snippet only edits headers with fixed values (no
    /// rewrite phase): the same for every request.
    pub fn only_headers(&self) -> bool {
        !self.rewrites
    }

    /// Runs the snippet on a request.
    pub fn run(&self, input: &Input<'_, '_>, out: &mut Outcome) {
        let mut st = State {
            input,
            vars: vec![String::new(); self.vars.len()],
            captures: Vec::new(),
            path: None,
            taken: vec![false; self.ifs],
            stopped: false,
            steps: 0,
        };
        st.rewrite_phase(&self.body, out);
        st.headers(&self.body, out);
        if let Some(path) = st.path.take()
            && out.reply.is_none()
        {
            out.target = Some(path);
        }
    }
}

struct State<'a, 'i, 'h> {
    input: &'a Input<'i, 'h>,
    vars: Vec<String>,
    captures: Vec<Option<String>>,
    /// The path and query after `rewrite`s so far.
    path: Option<String>,
    taken: Vec<bool>,
    stopped: bool,
    steps: usize,
}

impl State<'_, '_, '_> {
    fn uri(&self) -> &str {
        match &self.path {
            Some(p) => p.split_once('?').map_or(p.as_str(), |(p, _)| p),
            None => self.input.path,
        }
    }

    fn args(&self) -> &str {
        match &self.path {
            Some(p) => p.split_once('?').map_or("", |(_, q)| q),
            None => self.input.query.unwrap_or(""),
        }
    }

    fn eval(&self, t: &Template) -> String {
        let mut out = String::new();
        for p in &t.0 {
            match p {
                Piece::Text(s) => out.push_str(s),
                Piece::Var(v) => self.var(v, &mut out),
            }
        }
        out
    }

    fn var(&self, v: &Var, out: &mut String) {
        let i = self.input;
        let bytes = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        match v {
            Var::RequestMethod => out.push_str(i.method),
            Var::Host => out.push_str(i.host),
            Var::Uri => out.push_str(self.uri()),
            Var::RequestUri => out.push_str(i.request_uri),
            Var::Args => out.push_str(self.args()),
            Var::Arg(name) => {
                let found = self.args().split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    k.eq_ignore_ascii_case(name).then_some(v)
                });
                out.push_str(found.unwrap_or(""));
            }
            Var::Header(name) => out.push_str(&bytes((i.header)(name))),
            Var::Cookie(name) => out.push_str(&bytes((i.cookie)(name))),
            Var::RemoteAddr => out.push_str(&i.client.to_string()),
            Var::Scheme => out.push_str(if i.tls { "https" } else { "http" }),
            Var::Capture(n) => {
                if let Some(Some(c)) = self.captures.get(*n) {
                    out.push_str(c);
                }
            }
            Var::Set(n) => out.push_str(&self.vars[*n]),
        }
    }

    fn capture(&mut self, caps: &regex::Captures<'_>) {
        self.captures = caps
            .iter()
            .map(|m| m.map(|m| m.as_str().to_owned()))
            .collect();
    }

    fn rewrite_phase(&mut self, body: &[Stmt], out: &mut Outcome) {
        for s in body {
            if self.stopped {
                return;
            }
            self.steps += 1;
            if self.steps > MAX_STATEMENTS {
                self.stopped = true;
                return;
            }
            match s {
                Stmt::Set(n, t) => self.vars[*n] = self.eval(t),
                Stmt::Break => self.stopped = true,
                Stmt::Return(code, arg) => {
                    let mut text = arg.as_ref().map(|t| self.eval(t)).unwrap_or_default();
                    // nginx's absolute_redirect: a path gets the request's
                    // scheme and Host.
                    if matches!(code, 301 | 302 | 303 | 307 | 308) && text.starts_with('/') {
                        let scheme = if self.input.tls { "https" } else { "http" };
                        text = format!("{scheme}://{}{text}", self.input.host);
                    }
                    out.reply = Some((*code, text.into_bytes()));
                    self.stopped = true;
                }
                Stmt::Rewrite(r) => self.rewrite(r, out),
                Stmt::If(id, cond, inner) if self.holds(cond) => {
                    self.taken[*id] = true;
                    self.rewrite_phase(inner, out);
                }
                _ => {}
            }
        }
    }

    fn holds(&mut self, cond: &Cond) -> bool {
        match cond {
            Cond::Set(t) => {
                let v = self.eval(t);
                !v.is_empty() && v != "0"
            }
            Cond::Eq(t, want, negate) => (self.eval(t) == **want) != *negate,
            Cond::Match(t, re, negate) => {
                let v = self.eval(t);
                match re.captures(&v) {
                    Some(caps) if !negate => {
                        self.capture(&caps);
                        true
                    }
                    Some(_) => false,
                    None => *negate,
                }
            }
        }
    }

    fn rewrite(&mut self, r: &Rewrite, out: &mut Outcome) {
        let uri = self.uri().to_owned();
        let Some(caps) = r.regex.captures(&uri) else {
            return;
        };
        self.capture(&caps);
        let new = self.eval(&r.replacement);
        let absolute = new.starts_with("http://") || new.starts_with("https://");
        let (code, redirect) = match r.flag {
            Flag::Permanent => (301, true),
            Flag::Redirect => (302, true),
            _ if absolute => (302, true),
            _ => (0, false),
        };
        // The client's query follows, unless the replacement ends in `?`.
        let with_args = |mut target: String, args: &str| {
            match target.strip_suffix('?') {
                Some(t) => target = t.to_owned(),
                None if !args.is_empty() => {
                    target.push(if target.contains('?') { '&' } else { '?' });
                    target.push_str(args);
                }
                None => {}
            }
            target
        };
        let args = self.args().to_owned();
        if redirect {
            let location = if absolute {
                with_args(new, &args)
            } else {
                // nginx's absolute_redirect: scheme and Host of the request.
                let scheme = if self.input.tls { "https" } else { "http" };
                with_args(format!("{scheme}://{}{new}", self.input.host), &args)
            };
            out.reply = Some((code, location.into_bytes()));
            self.stopped = true;
            return;
        }
        self.path = Some(with_args(new, &args));
        if r.flag == Flag::Break {
            self.stopped = true;
        }
    }

    /// The header directives of the blocks that apply, with the values the
    /// rewrite phase left.
    fn headers(&self, body: &[Stmt], out: &mut Outcome) {
        let value = |t: &Template| HeaderValue::from_str(&self.eval(t)).ok();
        for s in body {
            match s {
                Stmt::SetRequest(fields) => out.request.set.extend(
                    fields
                        .iter()
                        .filter_map(|(n, t)| Some((n.clone(), value(t)?))),
                ),
                Stmt::SetResponse(fields) => out.response.set.extend(
                    fields
                        .iter()
                        .filter_map(|(n, t)| Some((n.clone(), value(t)?))),
                ),
                Stmt::AddResponse(n, t, always) => {
                    if let Some(v) = value(t).filter(|v| !v.is_empty()) {
                        out.response.add.push((n.clone(), v, *always));
                    }
                }
                Stmt::ClearRequest(ps) => out.request.clear.extend(ps.iter().map(to_public)),
                Stmt::ClearResponse(ps) => out.response.clear.extend(ps.iter().map(to_public)),
                Stmt::If(id, _, inner) if self.taken[*id] => self.headers(inner, out),
                _ => {}
            }
        }
    }
}

fn to_public(p: &NamePattern) -> NameOrPrefix {
    match p {
        NamePattern::Name(n) => NameOrPrefix::Name(n.clone()),
        NamePattern::Prefix(p) => NameOrPrefix::Prefix(p.clone()),
    }
}

// ---- Reading nginx's syntax.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A word, whether it was quoted, and its line.
    Word(String, bool, usize),
    Semi,
    Open,
    Close,
}

/// nginx's tokens: words (bare or quoted, with `\` escapes), `;`, `{`,
/// `}`, and `#` comments to the end of the line.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            ';' => {
                out.push((Tok::Semi, line));
                chars.next();
            }
            '{' => {
                out.push((Tok::Open, line));
                chars.next();
            }
            '}' => {
                out.push((Tok::Close, line));
                chars.next();
            }
            '"' | '\'' => {
                let quote = c;
                let start = line;
                chars.next();
                let mut word = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("line {start}: an unclosed {quote}")),
                        Some('\\') => match chars.next() {
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(c) if c == quote || c == '\\' => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("line {start}: an unclosed {quote}")),
                        },
                        Some(c) if c == quote => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            word.push(c);
                        }
                    }
                }
                match chars.peek() {
                    None => {}
                    Some(c) if c.is_whitespace() || matches!(c, ';' | '{' | '}' | ')') => {}
                    Some(c) => {
                        return Err(format!("line {line}: {c:?} right after a quoted string"));
                    }
                }
                out.push((Tok::Word(word, true, start), start));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}') {
                        break;
                    }
                    if (c == '"' || c == '\'') && word.is_empty() {
                        break;
                    }
                    chars.next();
                    if c == '\\'
                        && let Some(n) = chars.next()
                    {
                        word.push('\\');
                        word.push(n);
                        continue;
                    }
                    word.push(c);
                }
                out.push((Tok::Word(word, false, line), line));
            }
        }
    }
    Ok(out)
}

const ALLOWED: &str = "more_set_headers, more_clear_headers, more_set_input_headers, more_clear_input_headers, add_header, proxy_set_header, proxy_hide_header, return, rewrite, set, if, break";

struct Parser<'t> {
    toks: &'t [(Tok, usize)],
    at: usize,
    vars: &'t [Box<str>],
    scope: Scope,
    ifs: usize,
    rewrites: bool,
    statements: usize,
}

impl Parser<'_> {
    /// Statements up to the end, or up to a `}` when `nested`.
    fn block(&mut self, nested: bool) -> Result<Vec<Stmt>, String> {
        let mut out = Vec::new();
        loop {
            let Some((tok, line)) = self.toks.get(self.at) else {
                if nested {
                    return Err("an if block without its \"}\"".into());
                }
                return Ok(out);
            };
            let line = *line;
            match tok {
                Tok::Close if nested => {
                    self.at += 1;
                    return Ok(out);
                }
                Tok::Close => return Ok(out),
                Tok::Semi => {
                    // An empty statement, as nginx allows.
                    self.at += 1;
                }
                Tok::Open => return Err(format!("line {line}: a block without a directive")),
                Tok::Word(name, _, _) => {
                    self.statements += 1;
                    if self.statements > MAX_STATEMENTS {
                        return Err(format!("more than {MAX_STATEMENTS} directives"));
                    }
                    let name = name.clone();
                    self.at += 1;
                    if name == "if" {
                        out.push(self.if_block(line, nested)?);
                        continue;
                    }
                    let mut args = Vec::new();
                    loop {
                        match self.toks.get(self.at) {
                            Some((Tok::Word(w, quoted, _), _)) => {
                                args.push((w.clone(), *quoted));
                                self.at += 1;
                            }
                            Some((Tok::Semi, _)) => {
                                self.at += 1;
                                break;
                            }
                            Some((Tok::Open, _)) => {
                                return Err(format!(
                                    "line {line}: {name} {{ ... }}: {}",
                                    refused(&name)
                                ));
                            }
                            _ => return Err(format!("line {line}: {name} without its \";\"")),
                        }
                    }
                    out.push(
                        self.directive(&name, &args, nested)
                            .map_err(|e| format!("line {line}: {e}"))?,
                    );
                }
            }
        }
    }

    fn if_block(&mut self, line: usize, nested: bool) -> Result<Stmt, String> {
        if nested {
            return Err(format!(
                "line {line}: an if inside an if (nginx refuses it too)"
            ));
        }
        if self.scope == Scope::Auth {
            return Err(format!(
                "line {line}: if in an auth-snippet: only request header directives apply there"
            ));
        }
        let mut words = Vec::new();
        loop {
            match self.toks.get(self.at) {
                Some((Tok::Word(w, quoted, _), _)) => {
                    words.push((w.clone(), *quoted));
                    self.at += 1;
                }
                Some((Tok::Open, _)) => {
                    self.at += 1;
                    break;
                }
                _ => return Err(format!("line {line}: if without its \"{{\"")),
            }
        }
        let cond = self
            .condition(&mut words)
            .map_err(|e| format!("line {line}: {e}"))?;
        let id = self.ifs;
        self.ifs += 1;
        self.rewrites = true;
        let body = self.block(true)?;
        Ok(Stmt::If(id, cond, body))
    }

    /// `($var)`, `($var = text)`, `($var != text)`, `($var ~ re)`, `~*`,
    /// `!~`, `!~*`.
    fn condition(&self, words: &mut [(String, bool)]) -> Result<Cond, String> {
        let open = words.first_mut().ok_or("if without a condition")?;
        if open.1 || !open.0.starts_with('(') {
            return Err("if needs its condition in parentheses".into());
        }
        open.0.remove(0);
        let close = words.last_mut().ok_or("if without a condition")?;
        if close.0.ends_with(')') && !close.1 {
            close.0.pop();
        } else if close.0 == ")" {
            close.0.clear();
        } else {
            return Err("if needs its condition in parentheses".into());
        }
        let parts: Vec<&(String, bool)> = words
            .iter()
            .filter(|(w, quoted)| *quoted || !w.is_empty())
            .collect();
        let subject = match parts.first() {
            Some((w, false)) if w.starts_with('$') => self.template(w)?,
            Some((w, _)) if w.starts_with('-') || w.starts_with("!-") => {
                return Err(format!(
                    "if {w}: file checks are not carried out (no files are served)"
                ));
            }
            _ => return Err("if's condition must start with a $variable".into()),
        };
        match parts.as_slice() {
            [_] => Ok(Cond::Set(subject)),
            [_, (op, false), (value, _)] => match op.as_str() {
                "=" | "!=" => Ok(Cond::Eq(subject, value.as_str().into(), op == "!=")),
                "~" | "~*" | "!~" | "!~*" => {
                    let insensitive = op.ends_with('*');
                    let re = regex::RegexBuilder::new(value)
                        .case_insensitive(insensitive)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| format!("if: the regex {value:?} does not compile: {e}"))?;
                    Ok(Cond::Match(subject, re, op.starts_with('!')))
                }
                other => Err(format!("if: unknown operator {other:?}")),
            },
            _ => Err("if's condition is not `$var`, `$var = text` or `$var ~ regex`".into()),
        }
    }

    fn directive(
        &mut self,
        name: &str,
        args: &[(String, bool)],
        in_if: bool,
    ) -> Result<Stmt, String> {
        let want = |n: std::ops::RangeInclusive<usize>| {
            if n.contains(&args.len()) {
                Ok(())
            } else {
                Err(format!("{name}: wrong number of arguments"))
            }
        };
        let request_side = matches!(
            name,
            "more_set_input_headers" | "more_clear_input_headers" | "proxy_set_header"
        );
        if self.scope == Scope::Auth && !request_side {
            return Err(format!(
                "{name} in an auth-snippet: only proxy_set_header, more_set_input_headers and more_clear_input_headers apply to the auth request"
            ));
        }
        match name {
            "more_set_headers" | "more_set_input_headers" => {
                want(1..=usize::MAX)?;
                let mut out = Vec::new();
                for (a, _) in args {
                    if a.starts_with('-') {
                        return Err(format!(
                            "{name} {a}: the -s/-t/-r options are not carried out"
                        ));
                    }
                    let (n, v) = a.split_once(':').unwrap_or((a, ""));
                    let n = self.header_name(name, n.trim(), request_side)?;
                    let v = self.template(v.trim())?;
                    out.push((n, v));
                }
                Ok(if request_side {
                    Stmt::SetRequest(out)
                } else {
                    Stmt::SetResponse(out)
                })
            }
            "more_clear_headers" | "more_clear_input_headers" => {
                want(1..=usize::MAX)?;
                let mut pats = Vec::new();
                for (a, _) in args {
                    if a.starts_with('-') {
                        return Err(format!("{name} {a}: the -s/-t options are not carried out"));
                    }
                    for n in a.split_whitespace() {
                        pats.push(match n.strip_suffix('*') {
                            Some(p) => {
                                let p = p.to_ascii_lowercase();
                                if p.is_empty() || HeaderName::from_bytes(p.as_bytes()).is_err() {
                                    return Err(format!("{name}: {n:?} is not a field name"));
                                }
                                NamePattern::Prefix(p.into())
                            }
                            None => NamePattern::Name(self.header_name(name, n, request_side)?),
                        });
                    }
                }
                Ok(if request_side {
                    Stmt::ClearRequest(pats)
                } else {
                    Stmt::ClearResponse(pats)
                })
            }
            "add_header" => {
                want(2..=3)?;
                let always = match args.get(2) {
                    None => false,
                    Some((a, _)) if a == "always" => true,
                    Some((a, _)) => return Err(format!("add_header: {a:?} is not always")),
                };
                let n = self.header_name(name, &args[0].0, false)?;
                Ok(Stmt::AddResponse(n, self.template(&args[1].0)?, always))
            }
            "proxy_set_header" => {
                want(2..=2)?;
                if in_if {
                    return Err("proxy_set_header inside if (nginx refuses it too)".into());
                }
                let n = self.header_name(name, &args[0].0, true)?;
                Ok(Stmt::SetRequest(vec![(n, self.template(&args[1].0)?)]))
            }
            "proxy_hide_header" => {
                want(1..=1)?;
                if in_if {
                    return Err("proxy_hide_header inside if (nginx refuses it too)".into());
                }
                let n = self.header_name(name, &args[0].0, false)?;
                Ok(Stmt::ClearResponse(vec![NamePattern::Name(n)]))
            }
            "return" => {
                want(1..=2)?;
                self.rewrites = true;
                let (code, text) = match args {
                    [(c, _)] if c.bytes().all(|b| b.is_ascii_digit()) => (c.as_str(), None),
                    [(url, _)] => ("302", Some(url.as_str())),
                    [(c, _), (t, _)] => (c.as_str(), Some(t.as_str())),
                    _ => unreachable!("one or two arguments"),
                };
                let code: u16 = code
                    .parse()
                    .ok()
                    .filter(|c| (200..=599).contains(c))
                    .ok_or_else(|| format!("return {code}: not a status from 200 to 599"))?;
                if code == 444 {
                    return Err(
                        "return 444: nginx closes the connection without an answer; not carried out (return 403 or 404 instead)"
                            .into(),
                    );
                }
                let is_redirect = matches!(code, 301 | 302 | 303 | 307 | 308);
                match text {
                    Some(t)
                        if is_redirect
                            && !(t.starts_with("http://")
                                || t.starts_with("https://")
                                || t.starts_with("$scheme")
                                || t.starts_with('/')) =>
                    {
                        Err(format!("return {code} {t:?}: a redirect needs a URL"))
                    }
                    None if is_redirect => Err(format!("return {code}: a redirect needs a URL")),
                    _ => Ok(Stmt::Return(
                        code,
                        text.map(|t| self.template(t)).transpose()?,
                    )),
                }
            }
            "rewrite" => {
                want(2..=3)?;
                self.rewrites = true;
                let flag = match args.get(2).map(|(a, _)| a.as_str()) {
                    None => Flag::None,
                    Some("last" | "break") => Flag::Break,
                    Some("redirect") => Flag::Redirect,
                    Some("permanent") => Flag::Permanent,
                    Some(f) => return Err(format!("rewrite: unknown flag {f:?}")),
                };
                let regex = regex::RegexBuilder::new(&args[0].0)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        format!("rewrite: the regex {:?} does not compile: {e}", args[0].0)
                    })?;
                let replacement = self.template(&args[1].0)?;
                Ok(Stmt::Rewrite(Box::new(Rewrite {
                    regex,
                    replacement,
                    flag,
                })))
            }
            "set" => {
                want(2..=2)?;
                self.rewrites = true;
                let var = args[0].0.trim_start_matches('$');
                let n = self
                    .vars
                    .iter()
                    .position(|v| **v == *var)
                    .ok_or_else(|| format!("set: {:?} is not a $variable", args[0].0))?;
                Ok(Stmt::Set(n, self.template(&args[1].0)?))
            }
            "break" => {
                want(0..=0)?;
                self.rewrites = true;
                Ok(Stmt::Break)
            }
            other => Err(format!("{other}: {}", refused(other))),
        }
    }

    /// A field name a snippet may set or clear.
    fn header_name(&self, directive: &str, n: &str, request: bool) -> Result<HeaderName, String> {
        let name = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| format!("{directive}: {n:?} is not a field name"))?;
        if super::header_rules::framing_or_hop_by_hop(&name) {
            return Err(format!(
                "{directive} {n}: it frames the message or describes one hop, so no setting may change it"
            ));
        }
        let s = name.as_str();
        if request && (s.starts_with("x-forwarded-") || s == "x-real-ip" || s == "x-request-id") {
            return Err(format!(
                "{directive} {n}: the agent sets it itself (use-forwarded-headers trusts a balancer's)"
            ));
        }
        Ok(name)
    }

    fn template(&self, text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        for t in super::template::tokens(text)? {
            pieces.push(match t {
                super::template::Token::Text(s) => Piece::Text(s.into()),
                super::template::Token::Var(name) => Piece::Var(match known_var(name) {
                    Some(v) => v,
                    None => match self.vars.iter().position(|v| **v == *name) {
                        Some(n) => Var::Set(n),
                        None => {
                            return Err(format!(
                                "${name} is not a variable snippets may use ($request_method, $host, $uri, $request_uri, $args, $arg_NAME, $http_NAME, $cookie_NAME, $remote_addr, $scheme, $1 to $9, and set ones)"
                            ));
                        }
                    },
                }),
            });
        }
        Ok(Template(pieces))
    }
}

fn valid_var_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn known_var(name: &str) -> Option<Var> {
    Some(match name {
        "request_method" => Var::RequestMethod,
        "host" | "http_host" | "server_name" => Var::Host,
        "uri" | "document_uri" => Var::Uri,
        "request_uri" => Var::RequestUri,
        "args" | "query_string" => Var::Args,
        "remote_addr" => Var::RemoteAddr,
        "scheme" => Var::Scheme,
        n if n.len() == 1 && n.as_bytes()[0].is_ascii_digit() && n != "0" => {
            Var::Capture(usize::from(n.as_bytes()[0] - b'0'))
        }
        n if n.starts_with("arg_") && n.len() > 4 => Var::Arg(n[4..].into()),
        n if n.starts_with("http_") && n.len() > 5 => {
            Var::Header(n[5..].replace('_', "-").to_ascii_lowercase().into())
        }
        n if n.starts_with("cookie_") && n.len() > 7 => Var::Cookie(n[7..].into()),
        _ => return None,
    })
}

/// Why a directive outside the closed set is refused.
fn refused(name: &str) -> String {
    let why = match name {
        "location" => "locations are not carried out; use another Ingress path",
        "proxy_pass" | "grpc_pass" | "fastcgi_pass" | "uwsgi_pass" => {
            "the backend is the Ingress's Service, never a snippet's"
        }
        n if n.contains("lua") => "Lua is never run",
        "include" | "load_module" => "no file is read",
        "allow" | "deny" => "use allowlist-source-range / denylist-source-range",
        _ => "not a directive xingress carries out",
    };
    format!("{why} (snippets may use: {ALLOWED})")
}

/// An Ingress's `server-snippet` and `configuration-snippet`: the
/// server's runs first, as nginx's server rewrite phase does, and the
/// location's sees the path it left.
#[derive(Debug, PartialEq, Eq)]
pub struct Snippets {
    pub server: Option<Snippet>,
    pub location: Option<Snippet>,
}

impl Snippets {
    pub fn run(&self, input: &Input<'_, '_>) -> Outcome {
        let mut out = Outcome::default();
        if let Some(s) = &self.server {
            s.run(input, &mut out);
            if out.reply.is_some() {
                return out;
            }
        }
        if let Some(l) = &self.location {
            match out.target.clone() {
                Some(t) => {
                    let (path, query) = match t.split_once('?') {
                        Some((p, q)) => (p, Some(q)),
                        None => (t.as_str(), None),
                    };
                    l.run(
                        &Input {
                            path,
                            query,
                            ..*input
                        },
                        &mut out,
                    );
                }
                None => l.run(input, &mut out),
            }
        }
        out
    }
}

/// An `auth-snippet`, kept with the Ingress's `auth-url`.
pub type AuthSnippet = Arc<Snippet>;

#[cfg(test)]
mod tests;
