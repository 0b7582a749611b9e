//! Wakes the manifest reloader as soon as the directory changes (inotify),
//! so a saved file is served in milliseconds instead of at the next poll.
//! The poll stays as the fallback: inotify can overflow, and some
//! filesystems (network, FUSE) never report.

use std::{
    ffi::OsString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use tokio::io::unix::AsyncFd;

/// What changes the directory's content: files written, created, removed,
/// renamed in or out (editors and Kubernetes ConfigMap volumes swap a
/// symlink), and attribute changes (touch).
/// Not IN_MODIFY: a file is re-read once its writer closes it, not halfway.
const EVENTS: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

pub struct DirWatch {
    fd: AsyncFd<OwnedFd>,
}

impl DirWatch {
    /// Watches `dir` (not its subdirectories: manifests are read from the
    /// directory itself).
    pub fn new(dir: &Path) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), EVENTS) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is owned by the AsyncFd and closed only
        // when it is dropped (after deregistration).
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Returns once something in the directory changed since the last call:
    /// the names it reported, or `Changes::everything()` when inotify lost
    /// events (queue overflow) or the directory itself moved.
    pub async fn changed(&mut self) -> io::Result<Changes> {
        let mut changes = Changes::default();
        loop {
            let mut guard = self.fd.readable().await?;
            // Room for many events; each is at least 16 bytes plus a name.
            let mut buf = [0u8; 8192];
            loop {
                // SAFETY: reads into a buffer of the given length.
                let n = unsafe {
                    libc::read(
                        self.fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n > 0 {
                    changes.add_events(&buf[..n as usize]);
                    continue;
                }
                let err = io::Error::last_os_error();
                if n < 0 && err.kind() == io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    break;
                }
                if n < 0 && err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(if n == 0 {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "inotify closed")
                } else {
                    err
                });
            }
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
    }
}

/// What inotify reported: file names in the directory, or that anything
/// may have changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub names: std::collections::BTreeSet<OsString>,
    pub everything: bool,
}

impl Changes {
    pub fn everything() -> Self {
        Self {
            names: Default::default(),
            everything: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && !self.everything
    }

    pub fn extend(&mut self, other: Changes) {
        self.names.extend(other.names);
        self.everything |= other.everything;
    }

    /// Reads `struct inotify_event`s (wd, mask, cookie, len, then `len`
    /// bytes of NUL-padded name) from one read of the descriptor.
    fn add_events(&mut self, mut buf: &[u8]) {
        const HEADER: usize = 16;
        while buf.len() >= HEADER {
            let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
            let (mask, len) = (word(4), word(12) as usize);
            let Some(name) = buf.get(HEADER..HEADER + len) else {
                self.everything = true;
                return;
            };
            if mask & (libc::IN_Q_OVERFLOW | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                self.everything = true;
            }
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(len)];
            if !name.is_empty() {
                self.names.insert(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_owned(),
                );
            }
            buf = &buf[HEADER + len..];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn reports_writes_renames_and_removals() {
        let dir = std::env::temp_dir().join(format!("xingress-dirwatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = DirWatch::new(&dir).unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(50), w.changed()).await;
        assert!(quiet.is_err(), "nothing changed yet");
        let steps: [(&dyn Fn(), &[&str]); 3] = [
            (
                &|| std::fs::write(dir.join("a.yaml"), "x").unwrap(),
                &["a.yaml"],
            ),
            (
                &|| std::fs::rename(dir.join("a.yaml"), dir.join("b.yaml")).unwrap(),
                &["a.yaml", "b.yaml"],
            ),
            (
                &|| std::fs::remove_file(dir.join("b.yaml")).unwrap(),
                &["b.yaml"],
            ),
        ];
        for (step, names) in steps {
            step();
            let mut seen = Changes::default();
            // A step's events may arrive in more than one read.
            while seen.names.len() < names.len() {
                let more = tokio::time::timeout(Duration::from_secs(5), w.changed())
                    .await
                    .expect("a change is reported")
                    .unwrap();
                seen.extend(more);
            }
            let expected: std::collections::BTreeSet<OsString> =
                names.iter().map(OsString::from).collect();
            assert_eq!(seen.names, expected);
            assert!(!seen.everything);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
