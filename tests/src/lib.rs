//! Helpers for xingress integration tests: in-process echo backends, the
//! agent as a child process driven through its CLI, network namespaces, and
//! a small blocking HTTP/1.1 client usable from any thread (and namespace).

pub mod agent;
pub mod alloc;
pub mod backend;
pub mod fake_api;
pub mod h2c;
pub mod http1;
pub mod l4;
pub mod netns;
pub mod scale;
pub mod tls_client;
pub mod xdp;

/// Fails the test (never skips) when it cannot run as it must.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} needs root (CAP_BPF, CAP_NET_ADMIN): run `cargo xtask test` as root; \
         these tests fail rather than skip"
    );
}
