//! `cargo xtask demo`: the seeds' cafe example through the agent.
//!
//! As root, the topology is real: a LAN (a bridge in a namespace of its
//! own) joining a client, the "edge node" where the agent runs with XDP on
//! its NIC (a veth) and two TCP pods; behind the node, one namespace per
//! cafe pod on a bridge, at the pod IPs of tests/examples/cafe. The cafe
//! goes through the agent's proxy; a TCP service (`tcp-services`) is
//! steered in XDP straight from the NIC to the TCP pods on the LAN.
//! Everything it creates is removed at the end, on failure and on Ctrl-C.

use std::{
    collections::BTreeMap,
    mem::ManuallyDrop,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    http1,
    netns::{Netns, veth},
    setup,
    util::{self, step},
};

const CLIENT_NS: &str = "xi-client";
const NODE_NS: &str = "xi-node";
/// The node's "NIC" facing the client: XDP attaches here.
const NODE_IF: &str = "xi-n0";
const NODE_IP: &str = "10.99.0.1";
const BRIDGE: &str = "xi-br0";
const POD_GATEWAY: &str = "10.244.0.1/16";
/// (pod, IP) exactly as tests/examples/cafe lists them.
const PODS: [(&str, &str); 5] = [
    ("tea-1", "10.244.1.11"),
    ("tea-2", "10.244.1.12"),
    ("coffee-1", "10.244.2.21"),
    ("coffee-2", "10.244.2.22"),
    ("default-http-backend-1", "10.244.0.10"),
];
const POD_PORT: u16 = 8080;
/// The LAN's bridge namespace, and the TCP pods on it.
const LAN_NS: &str = "xi-lan";
const TCP_PODS: [(&str, &str); 2] = [("tcp-echo-1", "10.99.0.31"), ("tcp-echo-2", "10.99.0.32")];
const TCP_POD_PORT: u16 = 7000;
/// The node port of the TCP service (tcp-services).
const TCP_SERVICE_PORT: u16 = 5432;
const TCP_CONNECTIONS: usize = 12;
const ADMIN: &str = "127.0.0.1:10254";
const REQUESTS_PER_PATH: usize = 4;
/// The host of the Gateway's listener and the HTTPRoute in cafe-gateway.yaml.
const GATEWAY_HOST: &str = "cafe.gateway.example";

/// Child processes to kill at exit, whichever way the demo ends.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Namespaces to delete at exit.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn cleanup() {
    let children = std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in &children {
        // SAFETY: signalling a child we spawned.
        unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
    }
    // The agent drains, detaches XDP and unpins its maps before it exits:
    // wait for that (reaping each child), and kill what is still there
    // after a few seconds, before the namespaces go.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut left = children;
    while !left.is_empty() && std::time::Instant::now() < deadline {
        // SAFETY: waitpid on our own children, without blocking.
        left.retain(|pid| unsafe {
            libc::waitpid(*pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) == 0
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in left {
        eprintln!("process {pid} did not stop on SIGTERM: killing it");
        // SAFETY: as above.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
    let namespaces = std::mem::take(&mut *NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()));
    for ns in namespaces.iter().rev() {
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
}

/// Ctrl-C / SIGTERM: clean up, then exit 130.
fn install_signal_cleanup() {
    // Block the signals in every thread and wait for them on one thread.
    // Children inherit the mask: `spawn` clears it in each of them.
    // SAFETY: plain libc signal-set manipulation on valid local sets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set_copy = set;
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set_copy, &mut sig);
            eprintln!("\ninterrupted: removing the demo topology");
            cleanup();
            std::process::exit(130);
        });
    }
}

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        cleanup();
    }
}

/// The agent's access log (its stdout) of the demo's requests.
fn print_access_log(agent_log: &Path) {
    step("access log (the agent's stdout: ingress-nginx's upstreaminfo format)");
    // Lines are written by a thread of their own: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    print!(
        "{}",
        std::fs::read_to_string(agent_log.with_extension("access.log")).unwrap_or_default()
    );
}

fn spawn(mut cmd: Command, log: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: only sigemptyset and sigprocmask (async-signal-safe) between
    // fork and exec. Without this the agent would inherit the demo's
    // blocked SIGTERM and never stop.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        // The agent's stdout is its access log.
        .stdout(std::fs::File::create(log.with_extension("access.log"))?)
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("spawn")?;
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child.id());
    Ok(child)
}

/// A namespace that `cleanup` deletes, after the processes in it are gone
/// (so its own drop must not delete it first).
fn netns(name: &str) -> Result<ManuallyDrop<Netns>> {
    let ns = Netns::create(name).with_context(|| format!("create namespace {name}"))?;
    NAMESPACES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name.to_string());
    Ok(ManuallyDrop::new(ns))
}

pub fn run(no_xdp: bool) -> Result<()> {
    if no_xdp {
        println!("--no-xdp: running the demo on loopback without XDP");
        run_without_xdp()
    } else if util::is_root() {
        run_with_xdp()
    } else {
        println!(
            "not root: running the demo on loopback WITHOUT XDP (run as root for the XDP topology)"
        );
        run_without_xdp()
    }
}

fn bin(name: &str) -> PathBuf {
    util::target_dir().join("debug").join(name)
}

fn run_with_xdp() -> Result<()> {
    setup::run()?;
    setup::build_all()?;
    install_signal_cleanup();
    let _cleanup = Cleanup;
    let logs = std::env::temp_dir().join("xingress-demo");
    std::fs::create_dir_all(&logs)?;

    step(
        "topology: client ns, TCP pods ── LAN bridge ── (XDP) node ns ── bridge ── one ns per cafe pod",
    );
    let lan = netns(LAN_NS)?;
    lan.exec_ip(&["link", "add", "xi-lan0", "type", "bridge"])?;
    lan.exec_ip(&["link", "set", "xi-lan0", "up"])?;
    let join = |ns: &Netns, inner: &str, addr: &str, port: &str| -> Result<()> {
        veth((ns, inner, addr), (&lan, port, ""))?;
        lan.exec_ip(&["link", "set", port, "master", "xi-lan0"])?;
        Ok(())
    };
    let client = netns(CLIENT_NS)?;
    let node = netns(NODE_NS)?;
    join(&node, NODE_IF, &format!("{NODE_IP}/24"), "xi-ln")?;
    join(&client, "xi-c0", "10.99.0.2/24", "xi-lc")?;
    // The switch port facing the node takes the frames XDP sends back out
    // (XDP_TX) as a NIC would: a veth needs XDP on it for that.
    let _switch_port = crate::netns::attach_xdp_pass(&lan, "xi-ln")
        .context("XDP on the LAN's port facing the node")?;
    // The kernel's next-hop lookup (bpf_fib_lookup) wants forwarding on.
    sysctl(&node, "net.ipv4.conf.all.forwarding=1")?;
    ethtool_tx_off(&client, "xi-c0")?;
    let mut tcp_pods = Vec::new();
    for (i, (pod, ip)) in TCP_PODS.iter().enumerate() {
        let ns = netns(&format!("xi-pod-{pod}"))?;
        join(&ns, "eth0", &format!("{ip}/24"), &format!("xi-lt{i}"))?;
        ethtool_tx_off(&ns, "eth0")?;
        println!(
            "  TCP pod {pod:20} {ip}:{TCP_POD_PORT}  (namespace {}, on the LAN)",
            ns.name()
        );
        tcp_pods.push(ns);
    }
    node.exec_ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    node.exec_ip(&["addr", "add", POD_GATEWAY, "dev", BRIDGE])?;
    node.exec_ip(&["link", "set", BRIDGE, "up"])?;
    let mut pods = Vec::new();
    for (i, (pod, ip)) in PODS.iter().enumerate() {
        let ns = netns(&format!("xi-pod-{pod}"))?;
        let node_side = format!("xi-p{i}");
        veth((&node, &node_side, ""), (&ns, "eth0", &format!("{ip}/16")))?;
        node.exec_ip(&["link", "set", &node_side, "master", BRIDGE])?;
        ns.exec_ip(&["route", "add", "default", "via", "10.244.0.1"])?;
        println!("  pod {pod:24} {ip}:{POD_PORT}  (namespace {})", ns.name());
        pods.push(ns);
    }
    println!("  client {CLIENT_NS} 10.99.0.2 → node {NODE_NS} {NODE_IP} ({NODE_IF}, XDP native)");

    step("start the pods' echo servers and the agent");
    for ((pod, ip), ns) in PODS.iter().zip(&pods) {
        let mut cmd = ns.command(bin("echo-backend").to_str().unwrap_or("echo-backend"));
        cmd.args(["--listen", &format!("{ip}:{POD_PORT}"), "--name", pod]);
        if pod.starts_with("default-http-backend") {
            cmd.arg("--default-backend");
        }
        spawn(cmd, &logs.join(format!("{pod}.log")))?;
    }
    for ((pod, ip), ns) in TCP_PODS.iter().zip(&tcp_pods) {
        let mut cmd = ns.command(bin("echo-backend").to_str().unwrap_or("echo-backend"));
        cmd.args([
            "--listen",
            &format!("{ip}:{TCP_POD_PORT}"),
            "--name",
            pod,
            "--tcp",
        ]);
        spawn(cmd, &logs.join(format!("{pod}.log")))?;
    }
    // The cafe as written, and the TCP service beside it.
    let manifests = logs.join("manifests");
    let _ = std::fs::remove_dir_all(&manifests);
    std::fs::create_dir_all(&manifests)?;
    for entry in std::fs::read_dir(util::root().join("tests/examples/cafe"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, manifests.join(name))?;
        }
    }
    std::fs::write(manifests.join("tcp-echo.yaml"), tcp_service_yaml())?;
    let mut agent_cmd = node.command(bin("xingress").to_str().unwrap_or("xingress"));
    agent_cmd
        .args(["run", "--manifests"])
        .arg(&manifests)
        .args([
            "--http-addr",
            "0.0.0.0:80",
            "--https-addr",
            "0.0.0.0:443",
            "--admin-addr",
            ADMIN,
            "--xdp-iface",
            NODE_IF,
            "--xdp-mode",
            "native",
            "--default-backend-service",
            "default/default-http-backend",
            "--tcp-services-configmap",
            "ingress/tcp-services",
        ]);
    let agent_log = logs.join("agent.log");
    println!(
        "$ ip netns exec {NODE_NS} xingress run --manifests {} --http-addr 0.0.0.0:80 --https-addr 0.0.0.0:443 --xdp-iface {NODE_IF} --xdp-mode native --default-backend-service default/default-http-backend --tcp-services-configmap ingress/tcp-services",
        manifests.display()
    );
    let mut agent = spawn(agent_cmd, &agent_log)?;
    let admin: SocketAddr = ADMIN.parse()?;
    wait_ready(&node, admin, &mut agent, &agent_log)?;

    step("requests from the client namespace to 10.99.0.1 (ports 80 and 443)");
    let http: SocketAddr = format!("{NODE_IP}:80").parse()?;
    let https: SocketAddr = format!("{NODE_IP}:443").parse()?;
    let answers = send_requests(http, https, Some(&client))?;
    verify(&answers, https.port())?;
    tcp_service_in_xdp(&node, &client, admin)?;

    step("XDP counters (from the agent's /metrics)");
    let metrics = node
        .run(move || http1::get(admin, "localhost", "/metrics").map(|r| r.text()))
        .context("node namespace")??;
    let xdp_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("xingress_xdp"))
        .collect();
    for l in &xdp_lines {
        println!("  {l}");
    }
    let attached_native = xdp_lines
        .iter()
        .any(|l| l.contains("mode=\"native\"") && l.ends_with(" 1"));
    let listener = metric(&metrics, "xingress_xdp_packets_total{class=\"listener\"}");
    if !attached_native {
        bail!(
            "XDP is not attached in native mode; agent log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
    }
    if listener == 0 {
        bail!("the XDP program counted no packets to the listener port");
    }
    println!(
        "\nXDP attached in native mode on {NODE_IF}; {listener} packets to the HTTP and HTTPS listeners seen at XDP."
    );
    step("$ xingress xdp stats   (reads the maps the agent pinned under /sys/fs/bpf/xingress)");
    let stats = util::Cmd::new(bin("xingress"))
        .args(["xdp", "stats"])
        .output()?;
    print!("{stats}");
    print_access_log(&agent_log);
    step("agent log");
    print!(
        "{}",
        std::fs::read_to_string(&agent_log).unwrap_or_default()
    );
    println!("\ndemo OK — removing the topology");
    Ok(())
}

fn wait_ready(node: &Netns, admin: SocketAddr, agent: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = agent.try_wait()? {
            bail!(
                "the agent exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let ready = node.run(move || {
            http1::get(admin, "localhost", "/readyz").is_ok_and(|r| r.status == 200)
        })?;
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the agent did not become ready:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// (URL, status, pod or Location) of each request.
type Answer = (String, u16, String);

/// The demo's requests: plain HTTP (redirected to HTTPS for the TLS host),
/// HTTPS with certificate verification by curl against the test CA, and
/// requests no rule matches. Run from `client`'s namespace when given.
fn send_requests(
    http: SocketAddr,
    https: SocketAddr,
    client: Option<&Netns>,
) -> Result<Vec<Answer>> {
    let plain = |host: &'static str, path: &'static str| -> Result<Answer> {
        let get = move || http1::get(http, host, path);
        let r = match client {
            Some(ns) => ns.run(get)??,
            None => get()?,
        };
        let who = r
            .header("x-pod")
            .or(r.header("location"))
            .unwrap_or("-")
            .to_string();
        Ok((format!("http://{host}{path}"), r.status, who))
    };
    let port = if https.port() == 443 {
        String::new()
    } else {
        format!(":{}", https.port())
    };
    let secure = |path: &str| -> Result<Answer> {
        let url = format!("https://cafe.example.com{port}{path}");
        let ca = util::root().join("tests/fixtures/tls/ca.crt");
        let resolve = format!("cafe.example.com:{}:{}", https.port(), https.ip());
        let mut cmd = match client {
            Some(ns) => ns.command("curl"),
            None => Command::new("curl"),
        };
        cmd.args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--max-time",
            "10",
            "--resolve",
            &resolve,
            "--cacert",
        ])
        .arg(&ca)
        .arg(&url);
        let out = cmd.output().context("run curl")?;
        if !out.status.success() {
            bail!(
                "curl {url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let head = String::from_utf8_lossy(&out.stdout);
        let mut words = head.split_whitespace();
        let version = words.next().unwrap_or("?").to_string();
        let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let pod = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-pod: ")
                    .map(|p| p.trim().to_string())
            })
            .unwrap_or_else(|| "-".into());
        Ok((
            format!("{url} ({version}, certificate verified)"),
            status,
            pod,
        ))
    };
    let mut out = Vec::new();
    let mut push = |a: Answer| {
        let who = if a.1 == 308 {
            format!("Location: {}", a.2)
        } else {
            format!("from pod {}", a.2)
        };
        println!("  GET {:66} -> {} {who}", a.0, a.1);
        out.push(a);
    };
    push(plain("cafe.example.com", "/tea")?);
    for path in ["/tea", "/coffee"] {
        for _ in 0..REQUESTS_PER_PATH {
            push(secure(path)?);
        }
    }
    push(secure("/milk")?);
    push(plain("kubia.example.com", "/")?);
    // The same cafe through a Gateway and an HTTPRoute (cafe-gateway.yaml),
    // whose filter tags each response.
    for path in ["/tea", "/coffee"] {
        for _ in 0..REQUESTS_PER_PATH {
            let get = move || http1::get(http, GATEWAY_HOST, path);
            let r = match client {
                Some(ns) => ns.run(get)??,
                None => get()?,
            };
            let who = format!(
                "{} (X-Routed-By: {})",
                r.header("x-pod").unwrap_or("-"),
                r.header("x-routed-by").unwrap_or("-")
            );
            push((format!("http://{GATEWAY_HOST}{path}"), r.status, who));
        }
    }
    Ok(out)
}

fn verify(answers: &[Answer], https_port: u16) -> Result<()> {
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let mut by_path: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut gateway: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for (url, status, who) in answers {
        if let Some(path) = url.strip_prefix(&format!("http://{GATEWAY_HOST}")) {
            let want = format!("{}-", path.trim_start_matches('/'));
            if *status != 200
                || !who.starts_with(&want)
                || !who.ends_with("(X-Routed-By: gateway-api)")
            {
                bail!(
                    "{url} (HTTPRoute) should reach a {want} pod with the route's header, got {status} {who}"
                );
            }
            gateway
                .entry(path)
                .or_default()
                .insert(who.split(' ').next().unwrap_or(""));
        } else if url.starts_with("http://cafe.example.com/tea") {
            let want = format!("https://cafe.example.com{port}/tea");
            if *status != 308 || *who != want {
                bail!("{url} should redirect (308) to {want}, got {status} {who}");
            }
        } else if url.contains("/tea ") || url.contains("/coffee ") {
            if *status != 200 {
                bail!("{url} answered {status}");
            }
            let path = if url.contains("/tea ") {
                "/tea"
            } else {
                "/coffee"
            };
            by_path.entry(path).or_default().push(who);
        } else if *status != 404 || !who.starts_with("default-http-backend") {
            bail!("{url} should reach the default backend's 404, got {status} from {who}");
        }
    }
    for (path, want) in [("/tea", "tea-"), ("/coffee", "coffee-")] {
        let pods = by_path.get(path).cloned().unwrap_or_default();
        if pods.len() != REQUESTS_PER_PATH || pods.iter().any(|p| !p.starts_with(want)) {
            bail!("{path} reached the wrong pods: {pods:?}");
        }
        let distinct: std::collections::BTreeSet<_> = pods.iter().collect();
        if distinct.len() < 2 {
            bail!("{path} did not spread over both pods: {pods:?}");
        }
    }
    println!(
        "  plain HTTP to the TLS host was redirected (308); over HTTPS (cafe-secret's certificate, verified by"
    );
    println!(
        "  curl) every /tea went to a tea pod and every /coffee to a coffee pod, both pods of each answering;"
    );
    if gateway.len() != 2 || gateway.values().any(|pods| pods.len() < 2) {
        bail!("the HTTPRoute did not spread /tea and /coffee over both pods each: {gateway:?}");
    }
    println!("  unmatched requests got the default backend");
    println!(
        "  through the Gateway and HTTPRoute (cafe.gateway.example), /tea and /coffee reached both pods of"
    );
    println!("  their Service, each response tagged by the route's ResponseHeaderModifier");
    Ok(())
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Without root: the same example on loopback (pods at 127.0.x.y), no XDP.
fn run_without_xdp() -> Result<()> {
    step("build the agent and the demo backends");
    util::cargo(&["build", "--workspace", "--bins"]).run()?;
    let dir = std::env::temp_dir().join(format!("xingress-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = Cleanup;
    let logs = dir.clone();
    let example = util::root().join("tests/examples/cafe");
    for entry in std::fs::read_dir(&example)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        // 10.244.x.y pod IPs → 127.0.x.y, which loopback answers for.
        let name = path.file_name().context("file name")?;
        std::fs::write(
            dir.join(name),
            text.replace("\"10.244.", "\"127.0.")
                .replace("ip: 10.244.", "ip: 127.0."),
        )?;
    }
    for (pod, ip) in PODS {
        let ip = ip.replace("10.244.", "127.0.");
        let mut cmd = Command::new(bin("echo-backend"));
        cmd.args(["--listen", &format!("{ip}:{POD_PORT}"), "--name", pod]);
        if pod.starts_with("default-http-backend") {
            cmd.arg("--default-backend");
        }
        spawn(cmd, &logs.join(format!("{pod}.log")))?;
    }
    let http: SocketAddr = "127.0.0.1:18080".parse()?;
    let https: SocketAddr = "127.0.0.1:18443".parse()?;
    let admin: SocketAddr = "127.0.0.1:20254".parse()?;
    let mut cmd = Command::new(bin("xingress"));
    cmd.args(["run", "--manifests"]).arg(&dir).args([
        "--http-addr",
        &http.to_string(),
        "--https-addr",
        &https.to_string(),
        "--admin-addr",
        &admin.to_string(),
        "--default-backend-service",
        "default/default-http-backend",
    ]);
    let log = logs.join("agent.log");
    let mut agent = spawn(cmd, &log)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = agent.try_wait()? {
            bail!(
                "the agent exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if http1::get(admin, "localhost", "/readyz").is_ok_and(|r| r.status == 200) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the agent did not become ready");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    step(&format!("requests to {http} and {https}"));
    let answers = send_requests(http, https, None)?;
    verify(&answers, https.port())?;
    print_access_log(&log);
    let _ = std::fs::remove_dir_all(&dir);
    println!("\ndemo OK (without XDP: run `cargo xtask demo` as root for the XDP topology)");
    Ok(())
}

fn sysctl(ns: &Netns, setting: &str) -> Result<()> {
    let ok = ns.command("sysctl").args(["-qw", setting]).status()?;
    if !ok.success() {
        bail!("sysctl {setting} failed in {}", ns.name());
    }
    Ok(())
}

/// Full checksums from this veth (as a NIC puts on the wire): veth's
/// partial ones cannot survive a frame that XDP rewrites and sends back.
fn ethtool_tx_off(ns: &Netns, dev: &str) -> Result<()> {
    let ok = ns
        .command("ethtool")
        .args(["-K", dev, "tx", "off"])
        .output()?;
    if !ok.status.success() {
        bail!(
            "ethtool -K {dev} tx off: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    Ok(())
}

/// The TCP service: a Service whose endpoints are the LAN's TCP pods, and
/// ingress-nginx's tcp-services ConfigMap exposing it on the node.
fn tcp_service_yaml() -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: tcp-echo, namespace: default}}\n\
         spec: {{ports: [{{name: echo, port: {TCP_POD_PORT}, protocol: TCP}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: tcp-echo-1, namespace: default, labels: {{kubernetes.io/service-name: tcp-echo}}}}\n\
         addressType: IPv4\nports: [{{name: echo, port: {TCP_POD_PORT}, protocol: TCP}}]\nendpoints:\n"
    );
    for (_, ip) in TCP_PODS {
        y.push_str(&format!(
            "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}}}\n"
        ));
    }
    y.push_str(&format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: tcp-services, namespace: ingress}}\n\
         data:\n  \"{TCP_SERVICE_PORT}\": \"default/tcp-echo:{TCP_POD_PORT}\"\n"
    ));
    y
}

/// Connections from the client to the TCP service, each answered by the
/// pod XDP chose; then the counters that show XDP carried them and the
/// agent's relay saw none.
fn tcp_service_in_xdp(node: &Netns, client: &Netns, admin: SocketAddr) -> Result<()> {
    use std::io::{Read, Write};
    step(&format!(
        "TCP service: {TCP_CONNECTIONS} connections from the client to {NODE_IP}:{TCP_SERVICE_PORT} (tcp-services → default/tcp-echo:{TCP_POD_PORT}), steered in XDP"
    ));
    // As any earlier traffic would: the node knows its neighbours (a flow
    // to a pod without a neighbour entry yet is left to the relay).
    node.run(|| {
        for (_, ip) in TCP_PODS {
            if let Ok(addr) = format!("{ip}:{TCP_POD_PORT}").parse::<SocketAddr>() {
                let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2));
            }
        }
    })?;
    let service: SocketAddr = format!("{NODE_IP}:{TCP_SERVICE_PORT}").parse()?;
    let answers = client.run(move || -> Result<Vec<(SocketAddr, String)>> {
        let mut out = Vec::new();
        for i in 0..TCP_CONNECTIONS {
            let mut s = std::net::TcpStream::connect_timeout(&service, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let local = s.local_addr()?;
            let msg = format!("hello {i}\n");
            s.write_all(msg.as_bytes())?;
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            // The pod's name line, then the echo.
            while got.iter().filter(|b| **b == b'\n').count() < 2 {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            let pod = text.lines().next().unwrap_or("").to_string();
            if text.lines().nth(1) != Some(msg.trim_end()) {
                bail!("connection {i}: the echo came back as {text:?}");
            }
            out.push((local, pod));
        }
        Ok(out)
    })??;
    for (local, pod) in &answers {
        println!("  {local} → {NODE_IP}:{TCP_SERVICE_PORT}  answered by {pod}");
    }
    for (pod, _) in TCP_PODS {
        if !answers.iter().any(|(_, p)| p == pod) {
            bail!("no connection reached {pod}: {answers:?}");
        }
    }
    let metrics = node
        .run(move || http1::get(admin, "localhost", "/metrics").map(|r| r.text()))
        .context("node namespace")??;
    for l in metrics.lines().filter(|l| {
        (l.starts_with("xingress_xdp_l4_") || l.starts_with("xingress_l4_relay_flows_total"))
            && !l.ends_with(" 0")
    }) {
        println!("  {l}");
    }
    let steered = metric(
        &metrics,
        &format!(
            "xingress_xdp_l4_flows_total{{protocol=\"TCP\",port=\"{TCP_SERVICE_PORT}\",service=\"default/tcp-echo:{TCP_POD_PORT}\",result=\"steered\"}}"
        ),
    );
    let relayed = metric(
        &metrics,
        &format!(
            "xingress_l4_relay_flows_total{{protocol=\"TCP\",port=\"{TCP_SERVICE_PORT}\",result=\"relayed\"}}"
        ),
    );
    if steered < TCP_CONNECTIONS as u64 || relayed != 0 {
        bail!(
            "expected {TCP_CONNECTIONS} flows steered in XDP and none relayed; steered {steered}, relayed {relayed}"
        );
    }
    println!(
        "\n{steered} TCP flows steered in XDP from {NODE_IF} straight to the pods (Maglev, SNAT from the node's address); the agent's relay on that port took none."
    );
    Ok(())
}
