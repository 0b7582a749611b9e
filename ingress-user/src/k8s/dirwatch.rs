//! Wakes the manifest reloader as soon as the directory changes (inotify),
//! so a saved file is served in milliseconds instead of at the next poll.
//! The poll stays as the fallback: inotify can overflow, and some
//! filesystems (network, FUSE) never report.

use std::{
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

    /// Returns once something in the directory changed since the last call
    /// (events are drained, not interpreted: the caller re-reads anyway).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 4096];
            let mut any = false;
            loop {
                // SAFETY: reads into a local buffer of the given length.
                let n = unsafe {
                    libc::read(
                        self.fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n > 0 {
                    any = true;
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
            if any {
                return Ok(());
            }
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
        let steps: [&dyn Fn(); 3] = [
            &|| std::fs::write(dir.join("a.yaml"), "x").unwrap(),
            &|| std::fs::rename(dir.join("a.yaml"), dir.join("b.yaml")).unwrap(),
            &|| std::fs::remove_file(dir.join("b.yaml")).unwrap(),
        ];
        for step in steps {
            step();
            tokio::time::timeout(Duration::from_secs(5), w.changed())
                .await
                .expect("a change is reported")
                .unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
