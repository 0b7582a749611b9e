//! `cargo xtask bench l4`: a UDP service's datagrams through the edge
//! node, in one run: steered in XDP, through the agent's userspace relay,
//! through nginx `stream` (one worker), and straight to the pod (a check
//! that the path carries the rate). A LAN in namespaces as in
//! `tests/tests/xdp_l4.rs` (client, node with XDP native on its NIC, pod);
//! 64-byte datagrams at a fixed rate every path sustains, for `RUN` each.
//! The figure is the proxy's own CPU per datagram: the XDP program's run
//! time from the kernel's BPF statistics, the relay's and nginx's process
//! time. Not measured: what the kernel spends around each (for XDP on a
//! veth, turning the frame back into a packet on the far side; for the
//! sockets, the receive path before the process is woken), because every
//! namespace here shares one kernel and its softirq time cannot be told
//! apart per path.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::Proc,
    netns::{Netns, attach_xdp_pass, veth},
    util::{self, Cmd, step},
};

const NODE: &str = "10.96.0.1";
const CLIENT: &str = "10.96.0.2";
const POD: &str = "10.96.0.10";
const POD_PORT: u16 = 7000;
/// The agent's service port, and nginx's.
const AGENT_PORT: u16 = 5201;
const NGINX_PORT: u16 = 5202;
const ADMIN: &str = "127.0.0.1:10254";
const RUN: Duration = Duration::from_secs(5);
const PAYLOAD: usize = 64;
/// The send rate, which every path carries without loss here, so each row
/// does the same work and the CPU it took is comparable (flat out, the
/// machine saturates and the rows measure how fast the sender could go).
const RATE: &str = "58.6k datagrams/s";
const RATE_PPS: u64 = 58_600;

fn ensure_tools() -> Result<()> {
    if Path::new("/usr/lib/nginx/modules/ngx_stream_module.so").exists() {
        return Ok(());
    }
    let missing = ["libnginx-mod-stream"];
    Cmd::new("apt-get").args(["update", "-q"]).run()?;
    Cmd::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()?;
    // Debian starts a system nginx on install; this benchmark runs its own.
    let _ = Cmd::new("service").args(["nginx", "stop"]).succeeds();
    Ok(())
}

struct Run {
    mode: &'static str,
    sent: u64,
    received: u64,
    /// The proxy's own CPU seconds over the run.
    cpu: f64,
}

/// A process's and its children's user + system CPU seconds so far.
fn process_seconds(pid: u32) -> f64 {
    let ticks = |pid: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let f: Vec<u64> = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(f.get(10)? + f.get(11)?)
            })
            .unwrap_or(0)
    };
    let mut total = ticks(&pid.to_string());
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for c in children.split_whitespace() {
        total += ticks(c);
    }
    // SAFETY: sysconf has no preconditions.
    total as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// The run time of the XDP programs process `pid` holds (BPF statistics:
/// `kernel.bpf_stats_enabled`), in seconds.
fn xdp_seconds(pid: u32) -> f64 {
    let mut ns = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // BPF_PROG_TYPE_XDP is 6.
        if !info
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["prog_type:", "6"])
        {
            continue;
        }
        ns += info
            .lines()
            .find_map(|l| l.strip_prefix("run_time_ns:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e9
}

/// `RATE_PPS` datagrams a second from the client's namespace to `target`
/// for RUN, counted by a receiver on the pod; the machine's busy CPU
/// seconds meanwhile minus this process's own (the sender and receiver
/// threads): the network path, with the proxy in it.
fn blast(
    client: &Netns,
    pod: &Netns,
    (target, port): (&str, u16),
    mode: &'static str,
    cost: &dyn Fn() -> f64,
) -> Result<Run> {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    let target: SocketAddr = format!("{target}:{port}").parse()?;
    let rx = pod.run(|| std::net::UdpSocket::bind(format!("{POD}:{POD_PORT}")))??;
    rx.set_read_timeout(Some(Duration::from_millis(50)))?;
    let tx = client.run(|| std::net::UdpSocket::bind(format!("{CLIENT}:0")))??;
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let receiver = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let payload = [0x5a_u8; PAYLOAD];
    // A first datagram sets the flow up (and lets XDP resolve nothing
    // lazily inside the measurement).
    tx.send_to(&payload, target)?;
    std::thread::sleep(Duration::from_millis(200));
    let base = count.load(Ordering::Relaxed);
    let cost0 = cost();
    let start = Instant::now();
    let mut sent = 0u64;
    let per_ms = RATE_PPS / 1000;
    while start.elapsed() < RUN {
        for _ in 0..per_ms {
            if tx.send_to(&payload, target).is_ok() {
                sent += 1;
            }
        }
        let next = start + Duration::from_micros(1000 * sent / per_ms);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let cpu = cost() - cost0;
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    Ok(Run {
        mode,
        sent,
        received: count.load(Ordering::Relaxed) - base,
        cpu,
    })
}

fn manifests(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("sink.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: sink, namespace: default}}\n\
             spec: {{ports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}, {{name: udp, port: {POD_PORT}, protocol: UDP}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: sink-1, namespace: default, labels: {{kubernetes.io/service-name: sink}}}}\n\
             addressType: IPv4\nports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}, {{name: udp, port: {POD_PORT}, protocol: UDP}}]\n\
             endpoints: [{{addresses: [\"{POD}\"], conditions: {{ready: true}}}}]\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: tcp-services, namespace: ingress}}\n\
             data: {{\"{AGENT_PORT}\": \"default/sink:tcp\"}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: udp-services, namespace: ingress}}\n\
             data: {{\"{AGENT_PORT}\": \"default/sink:udp\"}}\n"
        ),
    )?;
    Ok(())
}

fn agent(node: &Netns, dir: &Path, xdp: bool, log: &Path) -> Result<Proc> {
    let bin = util::target_dir().join("release/xingress");
    let mut cmd = node.command(bin.to_str().unwrap_or("xingress"));
    cmd.args(["run", "--manifests"])
        .arg(dir)
        .args([
            "--http-addr",
            &format!("{NODE}:8080"),
            "--https-addr",
            &format!("{NODE}:8443"),
        ])
        .args(["--admin-addr", ADMIN, "--access-log", "off"])
        .args(["--tcp-services-configmap", "ingress/tcp-services"])
        .args(["--udp-services-configmap", "ingress/udp-services"])
        .env("XINGRESS_LOG", "warn");
    if xdp {
        cmd.args(["--xdp-iface", "node0", "--xdp-mode", "native"])
            .args(["--xdp-pin-path", "/sys/fs/bpf/xingress-bench-l4"]);
    }
    let kid = Proc::spawn(cmd, log)?;
    let admin: SocketAddr = ADMIN.parse()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = node
            .run(move || {
                crate::http1::get(admin, "localhost", "/readyz").is_ok_and(|r| r.status == 200)
            })
            .unwrap_or(false);
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the agent did not become ready: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The node's neighbour entry for the pod, as any earlier traffic
    // leaves it (a flow whose pod has none yet is left to the relay).
    let pod: SocketAddr = format!("{POD}:{POD_PORT}").parse()?;
    let _ = node.run(move || std::net::TcpStream::connect_timeout(&pod, Duration::from_secs(2)));
    Ok(kid)
}

fn nginx(node: &Netns, work: &Path) -> Result<Proc> {
    let prefix = work.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             worker_processes 1;\nerror_log logs/error.log warn;\npid logs/nginx.pid;\n\
             events {{ worker_connections 4096; }}\n\
             stream {{\n\
               server {{ listen {NODE}:{NGINX_PORT}; proxy_pass {POD}:{POD_PORT}; }}\n\
               server {{ listen {NODE}:{NGINX_PORT} udp; proxy_pass {POD}:{POD_PORT}; proxy_timeout 10s; }}\n\
             }}\n"
        ),
    )?;
    let mut cmd = node.command("nginx");
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    let kid = Proc::spawn(cmd, &prefix.join("stderr.log"))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(kid)
}

pub fn run() -> Result<()> {
    step(
        "L4 benchmark: a UDP service through the edge node — XDP, the relay, nginx stream, direct",
    );
    if !util::is_root() {
        bail!("the L4 benchmark builds network namespaces and loads XDP: run it as root");
    }
    ensure_tools()?;
    crate::setup::build_ebpf()?;
    util::cargo(&["build", "--release", "-p", "ingress-user"]).run()?;
    let work = std::env::temp_dir().join(format!("xingress-bench-l4-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let manifests_dir = work.join("manifests");
    manifests(&manifests_dir)?;

    let lan = Netns::unique("xgbl-lan")?;
    lan.exec_ip(&["link", "add", "br0", "type", "bridge"])?;
    lan.exec_ip(&["link", "set", "br0", "up"])?;
    let join = |ns: &Netns, inner: &str, addr: &str, port: &str| -> Result<()> {
        veth((ns, inner, addr), (&lan, port, ""))?;
        lan.exec_ip(&["link", "set", port, "master", "br0"])?;
        Ok(())
    };
    let node = Netns::unique("xgbl-node")?;
    let client = Netns::unique("xgbl-client")?;
    let pod = Netns::unique("xgbl-pod")?;
    join(&node, "node0", &format!("{NODE}/24"), "ln")?;
    join(&client, "c0", &format!("{CLIENT}/24"), "lc")?;
    join(&pod, "p0", &format!("{POD}/24"), "lp")?;
    let _port_xdp = attach_xdp_pass(&lan, "ln")?;
    for (ns, dev) in [(&client, "c0"), (&pod, "p0")] {
        let ok = ns
            .command("ethtool")
            .args(["-K", dev, "tx", "off"])
            .output()?;
        if !ok.status.success() {
            bail!("ethtool -K {dev} tx off failed");
        }
    }
    let ok = node
        .command("sysctl")
        .args(["-qw", "net.ipv4.conf.all.forwarding=1"])
        .status()?;
    if !ok.success() {
        bail!("sysctl forwarding failed");
    }

    // The XDP program's run time is counted only with BPF statistics on.
    let stats_path = "/proc/sys/kernel/bpf_stats_enabled";
    let stats_before = std::fs::read_to_string(stats_path).unwrap_or_else(|_| "0".into());
    std::fs::write(stats_path, "1").context("enable kernel.bpf_stats_enabled")?;
    let mut runs = Vec::new();
    let none = || 0.0;
    // A check that the path works at the rate, not a cost.
    runs.push(blast(
        &client,
        &pod,
        (POD, POD_PORT),
        "direct (no proxy)",
        &none,
    )?);
    {
        let agent = agent(&node, &manifests_dir, true, &work.join("agent-xdp.log"))?;
        let pid = agent.id();
        let cost = move || xdp_seconds(pid);
        runs.push(blast(
            &client,
            &pod,
            (NODE, AGENT_PORT),
            "xingress, steered in XDP",
            &cost,
        )?);
    }
    {
        let agent = agent(&node, &manifests_dir, false, &work.join("agent-relay.log"))?;
        let pid = agent.id();
        let cost = move || process_seconds(pid);
        runs.push(blast(
            &client,
            &pod,
            (NODE, AGENT_PORT),
            "xingress, userspace relay",
            &cost,
        )?);
    }
    {
        let nginx = nginx(&node, &work)?;
        let pid = nginx.id();
        let cost = move || process_seconds(pid);
        runs.push(blast(
            &client,
            &pod,
            (NODE, NGINX_PORT),
            "nginx stream (1 worker)",
            &cost,
        )?);
    }
    let _ = std::fs::write(stats_path, stats_before.trim());
    println!(
        "\nUDP, {PAYLOAD}-byte datagrams at {RATE} from a client namespace through the node to a pod, {} s per row",
        RUN.as_secs()
    );
    println!(
        "The proxy's own CPU: for XDP the program's run time (BPF statistics); for the relay and nginx their processes' user + system time (their socket calls included, the kernel's receive path outside them not)."
    );
    println!(
        "| path | datagrams received | proxy CPU µs per datagram | datagrams per proxy CPU-second | vs the relay |\n|---|---|---|---|---|"
    );
    let relay = runs
        .iter()
        .find(|r| r.mode.contains("relay"))
        .map_or(0.0, |r| r.received as f64 / r.cpu.max(1e-9));
    let mut json = String::from("[");
    for r in &runs {
        let direct = r.mode.starts_with("direct");
        let per = r.cpu / r.received.max(1) as f64;
        let per_cpu_s = r.received as f64 / r.cpu.max(1e-9);
        let (per_s, rate_s, ratio_s) = if direct {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.3}", per * 1e6),
                format!("{per_cpu_s:.0}"),
                format!("{:.1}×", per_cpu_s / relay.max(1e-9)),
            )
        };
        println!(
            "| {} | {} of {} | {per_s} | {rate_s} | {ratio_s} |",
            r.mode, r.received, r.sent
        );
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"path\":\"{}\",\"received\":{},\"sent\":{},\"proxy_cpu_seconds\":{:.6},\"proxy_cpu_us_per_datagram\":{:.4}}}",
            r.mode,
            r.received,
            r.sent,
            r.cpu,
            per * 1e6
        ));
    }
    json.push_str("]\n");
    let dir = util::target_dir().join("bench-results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("l4.json"), json)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
