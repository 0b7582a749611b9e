//! HTTP basic authentication (`auth-type: basic`): users and password
//! hashes from an htpasswd file in a Secret, checked per request.
//!
//! The hash formats are nginx's (`auth_basic_user_file`): Apache's MD5
//! (`$apr1$`, what `htpasswd` writes by default), MD5-crypt (`$1$`),
//! SHA-crypt (`$5$`, `$6$`), bcrypt (`$2y$` and kin, `htpasswd -B`), and the
//! RFC 2307 schemes `{SHA}`, `{SSHA}` and `{PLAIN}`. Traditional DES crypt
//! is not supported: such an entry is reported and cannot log in.
//!
//! Hashes are slow on purpose (bcrypt at cost 10 takes tens of
//! milliseconds), so a verified user:password pair is remembered by its
//! SHA-256 for the life of the routing snapshot, and later requests cost
//! one hash of a few dozen bytes.

use std::{collections::HashMap, sync::Mutex};

use base64::Engine as _;
use http::HeaderValue;
use md5::{Digest as _, Md5};

/// Verified credentials remembered per Ingress; the set starts over when full.
const VERIFIED_CAP: usize = 1024;

/// Users of one Ingress and the challenge sent to those who are not.
#[derive(Debug)]
pub struct BasicAuth {
    /// `WWW-Authenticate` of a 401: `Basic realm="..."`.
    pub challenge: HeaderValue,
    users: HashMap<String, PasswordHash>,
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
}

/// One stored password hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$apr1$salt$hash` or `$1$salt$hash`: magic, salt, whole string.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        full: String,
    },
    /// `$5$` (SHA-256) or `$6$` (SHA-512), with optional `rounds=N$`.
    ShaCrypt {
        sha512: bool,
        rounds: Option<u32>,
        salt: String,
        full: String,
    },
    /// `$2a$`, `$2b$`, `$2x$`, `$2y$`.
    Bcrypt(String),
    /// `{SHA}base64(sha1(password))`.
    Sha1(Vec<u8>),
    /// `{SSHA}base64(sha1(password + salt) + salt)`.
    Ssha { digest: Vec<u8>, salt: Vec<u8> },
    /// `{PLAIN}password`.
    Plain(String),
}

/// Why an htpasswd entry was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("not USER:HASH")]
    Shape,
    #[error("traditional DES crypt hashes are not supported (use htpasswd -B or -m)")]
    Des,
    #[error("the hash format is not one nginx reads")]
    Unknown,
    #[error("the hash is malformed")]
    Malformed,
    #[error(
        "the hash costs too much to check per request (bcrypt cost above 17, SHA-crypt rounds above 1000000)"
    )]
    TooCostly,
}

/// The highest bcrypt cost `htpasswd -B -C` writes.
const MAX_BCRYPT_COST: u32 = 17;
/// SHA-crypt rounds allowed: a million take about a second.
const MAX_SHA_ROUNDS: u32 = 1_000_000;

impl PasswordHash {
    pub fn parse(s: &str) -> Result<Self, EntryError> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("$apr1$") {
            return md5_parts("$apr1$", rest, s);
        }
        if let Some(rest) = s.strip_prefix("$1$") {
            return md5_parts("$1$", rest, s);
        }
        for (magic, sha512) in [("$5$", false), ("$6$", true)] {
            if let Some(rest) = s.strip_prefix(magic) {
                let (rounds, rest) = match rest.strip_prefix("rounds=") {
                    Some(r) => {
                        let (n, rest) = r.split_once('$').ok_or(EntryError::Malformed)?;
                        let n: u32 = n.parse().map_err(|_| EntryError::Malformed)?;
                        if n > MAX_SHA_ROUNDS {
                            return Err(EntryError::TooCostly);
                        }
                        (Some(n.max(1000)), rest)
                    }
                    None => (None, rest),
                };
                let (salt, hash) = rest.rsplit_once('$').ok_or(EntryError::Malformed)?;
                if hash.len() != if sha512 { 86 } else { 43 } {
                    return Err(EntryError::Malformed);
                }
                return Ok(PasswordHash::ShaCrypt {
                    sha512,
                    rounds,
                    salt: salt.chars().take(16).collect(),
                    full: s.to_string(),
                });
            }
        }
        if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|m| s.starts_with(m))
        {
            // bcrypt's own parser checks the rest when verifying; a
            // malformed hash never verifies.
            let cost: u32 = match s.get(4..7) {
                Some(c) if s.len() == 60 && c.ends_with('$') => {
                    c[..2].parse().map_err(|_| EntryError::Malformed)?
                }
                _ => return Err(EntryError::Malformed),
            };
            return if cost > MAX_BCRYPT_COST {
                Err(EntryError::TooCostly)
            } else {
                Ok(PasswordHash::Bcrypt(s.to_string()))
            };
        }
        let b64 = |v: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|_| EntryError::Malformed)
        };
        if let Some(v) = s.strip_prefix("{SHA}") {
            let d = b64(v)?;
            return if d.len() == 20 {
                Ok(PasswordHash::Sha1(d))
            } else {
                Err(EntryError::Malformed)
            };
        }
        if let Some(v) = s.strip_prefix("{SSHA}") {
            let mut d = b64(v)?;
            if d.len() <= 20 {
                return Err(EntryError::Malformed);
            }
            let salt = d.split_off(20);
            return Ok(PasswordHash::Ssha { digest: d, salt });
        }
        if let Some(v) = s.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(v.to_string()));
        }
        if s.len() == 13 && s.bytes().all(|b| ITOA64.contains(&b)) {
            return Err(EntryError::Des);
        }
        Err(EntryError::Unknown)
    }

    /// Whether `password` hashes to this. Slow for the crypt formats.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Md5Crypt { magic, salt, full } => same(
                md5_crypt(password, salt.as_bytes(), magic).as_bytes(),
                full.as_bytes(),
            ),
            PasswordHash::ShaCrypt {
                sha512,
                rounds,
                salt,
                full,
            } => same(
                sha_crypt(password, salt.as_bytes(), *rounds, *sha512).as_bytes(),
                full.as_bytes(),
            ),
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Sha1(d) => same(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password).as_ref(),
                d,
            ),
            PasswordHash::Ssha { digest, salt } => {
                let mut cx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
                cx.update(password);
                cx.update(salt);
                same(cx.finish().as_ref(), digest)
            }
            PasswordHash::Plain(p) => same(password, p.as_bytes()),
        }
    }

    /// Whether checking costs real time (worth moving off the event loop).
    pub fn is_slow(&self) -> bool {
        matches!(
            self,
            PasswordHash::Md5Crypt { .. } | PasswordHash::ShaCrypt { .. } | PasswordHash::Bcrypt(_)
        )
    }
}

fn md5_parts(magic: &'static str, rest: &str, full: &str) -> Result<PasswordHash, EntryError> {
    let (salt, hash) = rest.split_once('$').ok_or(EntryError::Malformed)?;
    if salt.len() > 8 || hash.len() != 22 {
        return Err(EntryError::Malformed);
    }
    Ok(PasswordHash::Md5Crypt {
        magic,
        salt: salt.to_string(),
        full: full.to_string(),
    })
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Appends the `n` low 6-bit groups of `w`, least significant first.
fn to64(out: &mut String, mut w: u32, n: usize) {
    for _ in 0..n {
        out.push(ITOA64[(w & 0x3f) as usize] as char);
        w >>= 6;
    }
}

fn triple(out: &mut String, d: &[u8], (a, b, c): (usize, usize, usize), n: usize) {
    let w = (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]);
    to64(out, w, n);
}

/// Poul-Henning Kamp's MD5-crypt; `magic` is `$1$` or Apache's `$apr1$`.
fn md5_crypt(pw: &[u8], salt: &[u8], magic: &str) -> String {
    let alt = Md5::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize();
    let mut cx = Md5::new()
        .chain_update(pw)
        .chain_update(magic)
        .chain_update(salt);
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        cx.update(&alt[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i != 0 {
        if i & 1 == 1 {
            cx.update([0u8]);
        } else {
            cx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut f = cx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(pw);
        } else {
            c.update(f);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 == 1 {
            c.update(f);
        } else {
            c.update(pw);
        }
        f = c.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    for t in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        triple(&mut out, &f, t, 4);
    }
    to64(&mut out, u32::from(f[11]), 2);
    out
}

const SHA256_ORDER: [(usize, usize, usize); 10] = [
    (0, 10, 20),
    (21, 1, 11),
    (12, 22, 2),
    (3, 13, 23),
    (24, 4, 14),
    (15, 25, 5),
    (6, 16, 26),
    (27, 7, 17),
    (18, 28, 8),
    (9, 19, 29),
];

const SHA512_ORDER: [(usize, usize, usize); 21] = [
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
];

/// Ulrich Drepper's SHA-crypt (`$5$` SHA-256, `$6$` SHA-512).
fn sha_crypt(pw: &[u8], salt: &[u8], rounds: Option<u32>, sha512: bool) -> String {
    let alg = if sha512 {
        &ring::digest::SHA512
    } else {
        &ring::digest::SHA256
    };
    let h = |parts: &[&[u8]]| {
        let mut cx = ring::digest::Context::new(alg);
        for p in parts {
            cx.update(p);
        }
        cx.finish()
    };
    let len = alg.output_len();
    let b = h(&[pw, salt, pw]);
    let mut a = ring::digest::Context::new(alg);
    a.update(pw);
    a.update(salt);
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(len);
        a.update(&b.as_ref()[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            a.update(b.as_ref());
        } else {
            a.update(pw);
        }
        i >>= 1;
    }
    let mut a = a.finish();
    // P: the password's digest, repeated to the password's length.
    let dp = {
        let mut cx = ring::digest::Context::new(alg);
        for _ in 0..pw.len() {
            cx.update(pw);
        }
        cx.finish()
    };
    let p: Vec<u8> = dp.as_ref().iter().copied().cycle().take(pw.len()).collect();
    // S: the salt's digest, repeated to the salt's length.
    let ds = {
        let mut cx = ring::digest::Context::new(alg);
        for _ in 0..16 + usize::from(a.as_ref()[0]) {
            cx.update(salt);
        }
        cx.finish()
    };
    let s: Vec<u8> = ds
        .as_ref()
        .iter()
        .copied()
        .cycle()
        .take(salt.len())
        .collect();
    for r in 0..rounds.unwrap_or(5000) {
        let mut c = ring::digest::Context::new(alg);
        if r & 1 == 1 {
            c.update(&p);
        } else {
            c.update(a.as_ref());
        }
        if r % 3 != 0 {
            c.update(&s);
        }
        if r % 7 != 0 {
            c.update(&p);
        }
        if r & 1 == 1 {
            c.update(a.as_ref());
        } else {
            c.update(&p);
        }
        a = c.finish();
    }
    let d = a.as_ref();
    let mut out = String::with_capacity(128);
    out.push_str(if sha512 { "$6$" } else { "$5$" });
    if let Some(n) = rounds {
        out.push_str(&format!("rounds={n}$"));
    }
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    if sha512 {
        for t in SHA512_ORDER {
            triple(&mut out, d, t, 4);
        }
        to64(&mut out, u32::from(d[63]), 2);
    } else {
        for t in SHA256_ORDER {
            triple(&mut out, d, t, 4);
        }
        to64(&mut out, (u32::from(d[31]) << 8) | u32::from(d[30]), 3);
    }
    out
}

/// The outcome of checking a request's `Authorization`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Allowed,
    Refused,
}

impl BasicAuth {
    /// `realm` is quoted into the challenge (`"` and `\` escaped).
    pub fn new(realm: &str, users: HashMap<String, PasswordHash>) -> Self {
        let mut challenge = String::from("Basic realm=\"");
        for c in realm.chars().filter(|c| !c.is_control()) {
            if c == '"' || c == '\\' {
                challenge.push('\\');
            }
            challenge.push(c);
        }
        challenge.push('"');
        BasicAuth {
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"\"")),
            users,
            verified: Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Checks an `Authorization` field value; `slow` runs a hash that
    /// costs real time (the caller moves it off the event loop).
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        slow: impl FnOnce(&dyn Fn() -> bool) -> bool,
    ) -> Check {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return Check::Refused;
        };
        let Some(hash) = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.get(u))
        else {
            return Check::Refused;
        };
        if !hash.is_slow() {
            return if hash.verify(&password) {
                Check::Allowed
            } else {
                Check::Refused
            };
        }
        // The set lives as long as this snapshot, whose users' hashes are
        // fixed: the pair alone is the key.
        let mut cx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [&user[..], b"\0", &password[..]] {
            cx.update(part);
        }
        let key: [u8; 32] = cx
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        let lock = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if lock().contains(&key) {
            return Check::Allowed;
        }
        if !slow(&|| hash.verify(&password)) {
            return Check::Refused;
        }
        let mut verified = lock();
        if verified.len() >= VERIFIED_CAP {
            verified.clear();
        }
        verified.insert(key);
        Check::Allowed
    }
}

/// `Basic base64(user:password)` → (user, password).
fn credentials(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, password) = decoded.split_at(colon);
    Some((user.to_vec(), password[1..].to_vec()))
}

/// Parses an htpasswd file: `user:hash` lines; blank lines and `#`
/// comments are skipped. Returns the users and, per refused line, its
/// number and why (never the line itself: it holds a hash).
pub fn parse_htpasswd(text: &str) -> (HashMap<String, PasswordHash>, Vec<(usize, EntryError)>) {
    let mut users = HashMap::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = match line.split_once(':') {
            Some((user, hash)) if !user.is_empty() => {
                PasswordHash::parse(hash).map(|h| (user.to_string(), h))
            }
            _ => Err(EntryError::Shape),
        };
        match entry {
            // The first line for a user wins, as nginx reads the file.
            Ok((user, hash)) => {
                users.entry(user).or_insert(hash);
            }
            Err(e) => errors.push((n + 1, e)),
        }
    }
    (users, errors)
}

#[cfg(test)]
mod tests;
