//! Request path normalisation, before routing and access rules (nginx's
//! "complex URI" handling, made explicit). What it does, and why, is in
//! SECURITY.md ("Paths are normalised before routing").
//!
//! - `%XX` of an unreserved character (RFC 3986 §2.3: letters, digits,
//!   `-._~`) is decoded; other escapes are kept as sent (`%2F` stays an
//!   escape: it is data inside a segment, not a separator, so
//!   `/a%2Fb` never matches a rule for `/a/b`).
//! - Runs of `/` become one (nginx's `merge_slashes on`).
//! - `.` segments are removed and `..` removes the segment before it
//!   (RFC 3986 §5.2.4); a `..` above the root is refused (400, as nginx).
//! - Refused (400): a malformed escape, an encoded NUL, and a segment
//!   whose encoded `/` or `\` (`%2F`, `%5C`) would hide a `.` or `..`
//!   part from us while a pod that decodes them resolves it
//!   (`/public/..%2Fadmin`).
//!
//! The common path has nothing to do and is returned borrowed.

use std::borrow::Cow;

/// Why a path cannot be served (400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("malformed percent-escape in the path")]
    BadEscape,
    #[error("encoded NUL in the path")]
    Nul,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("an encoded slash hides a dot segment")]
    HiddenDotSegment,
    #[error("the path does not start with /")]
    NotAbsolute,
}

impl PathError {
    /// The reason, for a 400's log line.
    pub fn reason(self) -> &'static str {
        match self {
            PathError::BadEscape => "malformed percent-escape in the path",
            PathError::Nul => "encoded NUL in the path",
            PathError::AboveRoot => "the path climbs above the root",
            PathError::HiddenDotSegment => "an encoded slash hides a dot segment",
            PathError::NotAbsolute => "the path does not start with /",
        }
    }
}

/// The normalised form of `path` (no query). Borrowed when unchanged.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if !needs_work(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out = String::with_capacity(decoded.len());
    // Start offsets of the segments written to `out`, to pop on "..".
    let mut starts: Vec<usize> = Vec::new();
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let trailing = i == last;
        match *seg {
            "" if !trailing => continue,
            "." => {
                if trailing {
                    out.push('/');
                }
            }
            ".." => {
                let start = starts.pop().ok_or(PathError::AboveRoot)?;
                out.truncate(start);
                if trailing {
                    out.push('/');
                }
            }
            seg => {
                if hides_dot_segment(seg) {
                    return Err(PathError::HiddenDotSegment);
                }
                starts.push(out.len());
                out.push('/');
                out.push_str(seg);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    if out == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(out))
}

/// Whether the path may change: an escape, a dot segment, or `//`.
fn needs_work(p: &[u8]) -> bool {
    p.windows(2)
        .any(|w| w[0] == b'%' || (w[0] == b'/' && (w[1] == b'.' || w[1] == b'/')))
        || p.last() == Some(&b'%')
        || p.contains(&b'\\')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes the escapes of unreserved characters; checks every escape.
fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, PathError> {
    let p = path.as_bytes();
    if !p.contains(&b'%') {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] != b'%' {
            out.push(p[i]);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            p.get(i + 1).copied().and_then(hex),
            p.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        if byte == 0 {
            return Err(PathError::Nul);
        }
        if unreserved(byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(&p[i..i + 3]);
        }
        i += 3;
    }
    // Only ASCII bytes were replaced by ASCII bytes: still UTF-8.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::BadEscape)
}

/// Whether a segment, with `%2F` and `%5C` read as separators, has a `.`
/// or `..` part.
fn hides_dot_segment(seg: &str) -> bool {
    if !seg.contains('%') && !seg.contains('\\') {
        return false;
    }
    let lower = seg.to_ascii_lowercase();
    lower
        .split("%2f")
        .flat_map(|p| p.split("%5c"))
        .flat_map(|p| p.split('\\'))
        .any(|part| part == "." || part == "..")
}

#[cfg(test)]
mod tests {
    use super::{PathError, normalize_path};

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(|c| c.into_owned())
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for p in [
            "/",
            "/tea",
            "/tea/",
            "/a/b.c/d",
            "/x?not-a-query",
            "/caf%C3%A9",
        ] {
            let n = normalize_path(p).unwrap();
            assert_eq!(n, p);
            if !p.contains('%') {
                assert!(matches!(n, std::borrow::Cow::Borrowed(_)), "{p}");
            }
        }
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(norm("/public/../admin").unwrap(), "/admin");
        assert_eq!(norm("/public/./../admin/x").unwrap(), "/admin/x");
        assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/public/%2E./admin").unwrap(), "/admin");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/./b").unwrap(), "/a/b");
        assert_eq!(norm("/..a/.b/c..").unwrap(), "/..a/.b/c..");
        assert_eq!(norm("/.well-known/acme").unwrap(), "/.well-known/acme");
        assert_eq!(norm("/a/..").unwrap(), "/");
    }

    #[test]
    fn slashes_merge_and_unreserved_escapes_decode() {
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/a//b///c/").unwrap(), "/a/b/c/");
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/%7euser").unwrap(), "/~user");
        // Reserved and non-ASCII escapes stay as sent.
        assert_eq!(norm("/a%2Fb").unwrap(), "/a%2Fb");
        assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
        assert_eq!(norm("/caf%C3%A9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(norm("/public/..%2fadmin"), Err(PathError::HiddenDotSegment));
        assert_eq!(norm("/public/..%5Cadmin"), Err(PathError::HiddenDotSegment));
        assert_eq!(
            norm("/public/x%2F..%2Fadmin"),
            Err(PathError::HiddenDotSegment)
        );
        assert_eq!(
            norm("/public/%2e%2e%2fadmin"),
            Err(PathError::HiddenDotSegment)
        );
        assert_eq!(norm("/public/..\\admin"), Err(PathError::HiddenDotSegment));
        assert_eq!(norm("/../etc"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%2"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%00b"), Err(PathError::Nul));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
    }
}
