//! Running commands with clear headings and errors.

use std::{
    ffi::OsStr,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// The workspace's one target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn step(what: &str) {
    println!("\n==> {what}");
}

/// A command that prints itself and fails with context.
pub struct Cmd(Command);

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self(Command::new(program))
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.0.args(args);
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.0.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Self {
        self.0.env_remove(k);
        self
    }

    pub fn dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.0.current_dir(d.into());
        self
    }

    fn describe(&self) -> String {
        let mut s = self.0.get_program().to_string_lossy().into_owned();
        for a in self.0.get_args() {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs with inherited stdio; an unsuccessful exit is an error.
    pub fn run(mut self) -> Result<()> {
        let what = self.describe();
        println!("$ {what}");
        let status = self
            .0
            .status()
            .with_context(|| format!("cannot start `{what}`"))?;
        if !status.success() {
            bail!("`{what}` failed ({status})");
        }
        Ok(())
    }

    /// Runs `cargo test`, echoing its output, and sums the `test result:`
    /// lines into (passed, failed); a failed run is not an error here.
    pub fn run_counting_tests(mut self) -> Result<(u64, u64)> {
        use std::io::{BufRead, BufReader};
        let what = self.describe();
        println!("$ {what}");
        let mut child = self
            .0
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        let (mut passed, mut failed) = (0, 0);
        let stdout = child.stdout.take().context("piped stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split([';', '.']) {
                    let mut words = part.split_whitespace();
                    match (
                        words.next().and_then(|n| n.parse::<u64>().ok()),
                        words.next(),
                    ) {
                        (Some(n), Some("passed")) => passed += n,
                        (Some(n), Some("failed")) => failed += n,
                        _ => {}
                    }
                }
            }
        }
        let status = child.wait()?;
        if !status.success() && failed == 0 {
            bail!("`{what}` failed ({status}) before reporting test failures");
        }
        Ok((passed, failed))
    }

    /// Runs quietly and returns whether it succeeded.
    pub fn succeeds(mut self) -> bool {
        self.0
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs and returns stdout and stderr together; on failure the error
    /// carries the last lines of both.
    pub fn output_with_stderr(mut self) -> Result<String> {
        let what = self.describe();
        let out = self
            .0
            .output()
            .with_context(|| format!("cannot start `{what}`"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            bail!("`{what}` failed ({}):\n{tail}", out.status);
        }
        Ok(text)
    }

    /// Runs quietly and returns stdout.
    pub fn output(mut self) -> Result<String> {
        let what = self.describe();
        let out = self
            .0
            .output()
            .with_context(|| format!("cannot start `{what}`"))?;
        if !out.status.success() {
            bail!(
                "`{what}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `cargo ARGS` in the workspace, with the toolchain that runs xtask.
pub fn cargo(args: &[&str]) -> Cmd {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Cmd::new(cargo).args(args).dir(root())
}

/// `cargo +nightly ARGS` in ingress-ebpf (its .cargo/config.toml sets the
/// BPF target and build-std), building into the workspace's target/.
pub fn nightly_ebpf(args: &[&str]) -> Cmd {
    let mut full: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    if args
        .first()
        .is_some_and(|a| *a == "build" || *a == "clippy")
    {
        // Right after the subcommand: later arguments may belong to rustc/clippy.
        full.splice(1..1, ["--target-dir".into(), target_dir().into_os_string()]);
    }
    let mut cmd = Cmd::new("rustup")
        .args(["run", "nightly", "cargo"])
        .args(full)
        .dir(root().join("ingress-ebpf"));
    // Do not let the stable toolchain that runs xtask leak into the nightly build.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "CARGO",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd = cmd.env_remove(var);
    }
    cmd
}
