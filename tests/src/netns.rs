//! Network namespaces and veth pairs for tests and the demo, removed on drop.
//! Shared with xtask (included by path), so it depends on std and libc only.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> io::Result<()> {
    let out: Output = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A named network namespace, deleted (with its interfaces) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `NAME`, removing a stale one of the same name first.
    pub fn create(name: &str) -> io::Result<Self> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_string(),
        };
        ns.exec_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A namespace with a name unique to this process.
    pub fn unique(prefix: &str) -> io::Result<Self> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Self::create(&format!("{prefix}-{}-{n}", std::process::id()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`.
    pub fn exec_ip(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// A command that runs inside the namespace. Only the network namespace
    /// is entered (unlike `ip netns exec`, which also makes a private mount
    /// namespace and would hide bpffs pins from everyone else).
    pub fn command(&self, program: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let path = std::ffi::CString::new(format!("/var/run/netns/{}", self.name))
            .expect("no NUL in a namespace name");
        let mut c = Command::new(program);
        // SAFETY: only async-signal-safe calls (open, setns, close) between
        // fork and exec; the path was allocated before.
        unsafe {
            c.pre_exec(move || {
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let rc = libc::setns(fd, libc::CLONE_NEWNET);
                libc::close(fd);
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// Runs `f` on a new thread that has entered this namespace; sockets
    /// it creates live in the namespace.
    pub fn run<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = File::open(format!("/var/run/netns/{}", self.name))?;
        let handle = std::thread::spawn(move || {
            enter(&file)?;
            Ok::<R, io::Error>(f())
        });
        handle
            .join()
            .map_err(|_| io::Error::other("thread in namespace panicked"))?
    }

    /// Like `run`, but leaves the thread running (for servers).
    pub fn spawn<F>(&self, f: F) -> io::Result<std::thread::JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        let file = File::open(format!("/var/run/netns/{}", self.name))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let entered = enter(&file);
            let ok = entered.is_ok();
            let _ = tx.send(entered);
            if ok {
                f();
            }
        });
        rx.recv()
            .map_err(|_| io::Error::other("namespace thread died"))??;
        Ok(handle)
    }
}

fn enter(file: &File) -> io::Result<()> {
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Creates a veth pair with one end in each namespace, addresses them
/// (CIDR form, e.g. "10.99.0.1/24") and brings both up.
pub fn veth(a: (&Netns, &str, &str), b: (&Netns, &str, &str)) -> io::Result<()> {
    let (a_ns, a_if, a_addr) = a;
    let (b_ns, b_if, b_addr) = b;
    a_ns.exec_ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b_ns.name(),
    ])?;
    for (ns, ifname, addr) in [(a_ns, a_if, a_addr), (b_ns, b_if, b_addr)] {
        if !addr.is_empty() {
            ns.exec_ip(&["addr", "add", addr, "dev", ifname])?;
        }
        ns.exec_ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// A minimal XDP program (`return XDP_PASS`) attached natively to an
/// interface of `ns`, standing in for a NIC on the far side of a veth: a
/// veth delivers frames another veth sends by XDP_TX or redirect only when
/// it runs XDP itself (its NAPI mode). Detached when the returned link
/// descriptor is dropped.
pub fn attach_xdp_pass(ns: &Netns, ifname: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_XDP: u32 = 37;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    let ifname = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    ns.run(move || {
        // r0 = XDP_PASS (2); exit
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        // union bpf_attr, BPF_PROG_LOAD's fields up to expected_attach_type.
        let mut attr = [0u8; 128];
        let put32 = |a: &mut [u8; 128], off: usize, v: u32| {
            a[off..off + 4].copy_from_slice(&v.to_ne_bytes())
        };
        let put64 = |a: &mut [u8; 128], off: usize, v: u64| {
            a[off..off + 8].copy_from_slice(&v.to_ne_bytes())
        };
        put32(&mut attr, 0, BPF_PROG_TYPE_XDP);
        put32(&mut attr, 4, insns.len() as u32);
        put64(&mut attr, 8, insns.as_ptr() as u64);
        put64(&mut attr, 16, license.as_ptr() as u64);
        attr[48..52].copy_from_slice(b"pass");
        put32(&mut attr, 68, BPF_XDP);
        // SAFETY: the attribute block outlives the call; the kernel reads
        // the instructions and license it points to.
        let prog =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
        if prog < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just returned.
        let prog = unsafe { std::os::fd::OwnedFd::from_raw_fd(prog as i32) };
        // SAFETY: a NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut link = [0u8; 128];
        put32(&mut link, 0, prog.as_raw_fd() as u32);
        put32(&mut link, 4, index);
        put32(&mut link, 8, BPF_XDP);
        put32(&mut link, 12, XDP_FLAGS_DRV_MODE);
        // SAFETY: as above.
        let fd =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_CREATE, link.as_ptr(), link.len()) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just returned.
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
    })?
}
