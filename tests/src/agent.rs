//! The agent as users run it: the real `xingress` binary, driven through the
//! CLI contract, with its log kept for failure messages.

use std::{
    fs, io,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use crate::{http1, netns::Netns};

/// How long an agent gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `target/<profile>/xingress`, next to the test binary's directory.
pub fn xingress_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = dir.join("xingress");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo xtask test` does, or `cargo build -p ingress-user`)",
        bin.display()
    );
    bin
}

/// A free loopback port for an agent to bind next. Taken below the kernel's
/// ephemeral range (32768+), so an outgoing connection of this or another
/// test cannot grab it between the check and the agent's bind; each test
/// process starts at its own offset.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 60) * 200;
    loop {
        let port = 20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

/// A running agent; killed on drop if still running.
pub struct Agent {
    child: Child,
    log: PathBuf,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

impl Agent {
    /// `xingress run --manifests DIR --http-addr HTTP --admin-addr ADMIN EXTRA...`,
    /// inside `ns` when given.
    pub fn start(
        manifests: &Path,
        http: SocketAddr,
        admin: SocketAddr,
        extra: &[&str],
        ns: Option<&Netns>,
    ) -> io::Result<Self> {
        let dir = manifests.to_str().expect("utf-8 path");
        let mut args = vec!["--manifests", dir];
        args.extend_from_slice(extra);
        Self::spawn(&args, http, admin, ns)
    }

    fn spawn(
        args: &[&str],
        http: SocketAddr,
        admin: SocketAddr,
        ns: Option<&Netns>,
    ) -> io::Result<Self> {
        Self::spawn_limited(args, http, admin, ns, None, None)
    }

    /// `xingress run --manifests DIR EXTRA...` on loopback with its stdout
    /// (the access log) going to `stdout` instead of a file.
    pub fn start_local_with_stdout(
        manifests: &Path,
        extra: &[&str],
        stdout: Stdio,
    ) -> io::Result<Self> {
        Self::start_local_limited(manifests, extra, Some(stdout), None)
    }

    /// On loopback, as `start_local`, with the open-file limit (soft and
    /// hard) at `files`: what a crowded node leaves the agent.
    pub fn start_local_with_file_limit(
        manifests: &Path,
        extra: &[&str],
        files: u64,
    ) -> io::Result<Self> {
        Self::start_local_limited(manifests, extra, None, Some(files))
    }

    /// `xingress run --manifests DIR EXTRA...` on loopback with free ports.
    fn start_local_limited(
        manifests: &Path,
        extra: &[&str],
        stdout: Option<Stdio>,
        files: Option<u64>,
    ) -> io::Result<Self> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let dir = manifests.to_str().expect("utf-8 path");
        let mut args = vec!["--manifests", dir];
        args.extend_from_slice(extra);
        Self::spawn_limited(&args, http, admin, None, stdout, files)
    }

    fn spawn_limited(
        args: &[&str],
        http: SocketAddr,
        admin: SocketAddr,
        ns: Option<&Netns>,
        stdout: Option<Stdio>,
        files: Option<u64>,
    ) -> io::Result<Self> {
        let bin = xingress_bin();
        let mut cmd = match ns {
            Some(ns) => ns.command(bin.to_str().expect("utf-8 path")),
            None => Command::new(&bin),
        };
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let log =
            std::env::temp_dir().join(format!("xingress-agent-{}-{n}.log", std::process::id()));
        // HTTPS on the HTTP address's IP, next port that is free.
        let https = SocketAddr::new(http.ip(), free_port());
        cmd.arg("run")
            .args([
                "--http-addr",
                &http.to_string(),
                "--https-addr",
                &https.to_string(),
            ])
            .args(["--admin-addr", &admin.to_string()])
            .args(args)
            .env("XINGRESS_LOG", "info,xingress=debug")
            .stdin(Stdio::null())
            .stdout(match stdout {
                Some(s) => s,
                None => fs::File::create(log.with_extension("access.log"))?.into(),
            })
            .stderr(fs::File::create(&log)?);
        if let Some(n) = files {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; it only reads `lim`.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn()?;
        Ok(Self {
            child,
            log,
            http,
            https,
            admin,
        })
    }

    /// Kubernetes mode against the API server of `kubeconfig`, on loopback.
    pub fn start_cluster(kubeconfig: &Path, extra: &[&str]) -> io::Result<Self> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let kc = kubeconfig.to_str().expect("utf-8 path");
        // The test pods listen on loopback, which Kubernetes mode refuses
        // by default (`cluster.rs` checks that refusal on its own).
        let mut args = vec!["--kubeconfig", kc, "--allow-loopback-upstreams"];
        args.extend_from_slice(extra);
        Self::spawn(&args, http, admin, None)
    }

    /// On loopback with free ports.
    pub fn start_local(manifests: &Path, extra: &[&str]) -> io::Result<Self> {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        Self::start(manifests, http, admin, extra, None)
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the agent wrote to stdout: its access log.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.log.with_extension("access.log")).unwrap_or_default()
    }

    /// Waits for /readyz to answer 200 (call from the agent's namespace).
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "agent exited with {status} before ready:\n{}",
                    self.logs()
                ));
            }
            if http1::get(self.admin, "localhost", "/readyz").is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "agent not ready after {READY_TIMEOUT:?}:\n{}",
            self.logs()
        ))
    }

    /// The metric's value (summed over series matching `selector`, e.g.
    /// `xingress_xdp_packets_total{class="listener"}`).
    pub fn metric(&self, selector: &str) -> Option<f64> {
        let text = http1::get(self.admin, "localhost", "/metrics").ok()?.text();
        parse_metric(&text, selector)
    }

    /// SIGTERM, then wait (killed after `grace`).
    pub fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.terminate();
        self.wait(grace)
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        // SAFETY: kill(2) with a pid we own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the agent to exit; SIGKILL after `grace`.
    pub fn wait(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                return self.child.wait();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash, nothing is cleaned up.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.child.kill()?;
        self.child.wait()
    }

    /// Polls `ok` until it holds; fails the test (with this agent's log)
    /// after 10 s.
    pub fn eventually(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within 10 s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM first: the agent detaches XDP and unpins its maps (pins
        // of a SIGKILLed agent would outlive the test on bpffs).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(Duration::from_secs(5));
        }
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(self.log.with_extension("access.log"));
    }
}

/// Sums every sample of `text` whose series starts with `selector`
/// (a metric name, optionally with `{label="v"` prefix of its labels).
pub fn parse_metric(text: &str, selector: &str) -> Option<f64> {
    let sel = selector.trim_end_matches('}');
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let matches = series == selector
            || (series.starts_with(sel)
                && matches!(series.as_bytes().get(sel.len()), Some(b',' | b'}' | b'{')));
        if matches {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// A temporary manifest directory, removed on drop.
pub struct ManifestDir {
    pub path: PathBuf,
}

impl ManifestDir {
    pub fn new() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("xingress-manifests-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create manifest dir");
        Self { path }
    }

    pub fn write(&self, name: &str, text: &str) {
        fs::write(self.path.join(name), text).expect("write manifest");
    }

    /// Replaces a file atomically (write aside, then rename), as editors
    /// and Kubernetes volumes do: the agent never reads half of it.
    pub fn replace(&self, name: &str, text: &str) {
        let aside = self.path.join(format!(".{name}.tmp"));
        fs::write(&aside, text).expect("write manifest");
        fs::rename(&aside, self.path.join(name)).expect("rename manifest");
    }

    pub fn remove(&self, name: &str) {
        fs::remove_file(self.path.join(name)).expect("remove manifest");
    }
}

impl Default for ManifestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ManifestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
