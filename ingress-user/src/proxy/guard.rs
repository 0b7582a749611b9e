//! Addresses the proxy never connects to on an Ingress author's behalf
//! (pods from EndpointSlices, ExternalName hosts, `auth-url` services):
//! the agent's own listeners (admin, HTTP, HTTPS) on any local address,
//! link-local addresses (cloud metadata at 169.254.169.254) unless
//! `--allow-link-local-upstreams`, and in Kubernetes mode loopback (a pod
//! is never the node's loopback; file mode keeps it for first tries).
//!
//! Checked on the address actually connected to, after DNS: a name that
//! resolves to a refused address is refused too.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug)]
pub struct UpstreamGuard {
    /// The agent's listeners as bound (an unspecified IP: every local one).
    own: Vec<SocketAddr>,
    refuse_loopback: bool,
    allow_link_local: bool,
    /// The node's addresses, re-read at most every `LOCAL_TTL`, only when a
    /// peer's port is one of ours.
    local: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

const LOCAL_TTL: Duration = Duration::from_secs(5);

/// Why an upstream address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    OwnListener,
    LinkLocal,
    Loopback,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::OwnListener => "the address is one of the agent's own listeners",
            Refused::LinkLocal => {
                "link-local addresses (cloud metadata) are refused without --allow-link-local-upstreams"
            }
            Refused::Loopback => "loopback addresses are refused in Kubernetes mode",
        }
    }
}

impl UpstreamGuard {
    pub fn new(own: Vec<SocketAddr>, refuse_loopback: bool, allow_link_local: bool) -> Self {
        Self {
            own,
            refuse_loopback,
            allow_link_local,
            local: Mutex::new(None),
        }
    }

    /// Refuses nothing but the agent's own listeners (there are none here).
    pub fn none() -> Self {
        Self::new(Vec::new(), false, true)
    }

    pub fn check(&self, peer: SocketAddr) -> Result<(), Refused> {
        let ip = peer.ip().to_canonical();
        let loopback = ip.is_loopback() || ip.is_unspecified();
        if self.refuse_loopback && loopback {
            return Err(Refused::Loopback);
        }
        if !self.allow_link_local && link_local(ip) {
            return Err(Refused::LinkLocal);
        }
        for own in &self.own {
            if own.port() != peer.port() {
                continue;
            }
            let own_ip = own.ip().to_canonical();
            let hit = if own_ip.is_unspecified() {
                loopback || self.is_local(ip)
            } else {
                own_ip == ip || (loopback && own_ip.is_loopback())
            };
            if hit {
                return Err(Refused::OwnListener);
            }
        }
        Ok(())
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        let mut cached = self.local.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cached.as_ref().is_none_or(|(at, _)| now - *at > LOCAL_TTL) {
            *cached = Some((now, local_addresses()));
        }
        cached
            .as_ref()
            .is_some_and(|(_, ips)| ips.iter().any(|l| l.to_canonical() == ip))
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Every address of this network namespace's interfaces.
fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below; each
    // entry's address is read according to its family.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let a = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_listeners_are_refused_on_any_local_address() {
        let g = UpstreamGuard::new(
            vec![a("0.0.0.0:80"), a("127.0.0.1:10254"), a("[::]:443")],
            false,
            true,
        );
        assert_eq!(g.check(a("127.0.0.1:80")), Err(Refused::OwnListener));
        assert_eq!(g.check(a("127.0.0.2:80")), Err(Refused::OwnListener));
        assert_eq!(g.check(a("0.0.0.0:80")), Err(Refused::OwnListener));
        assert_eq!(g.check(a("127.0.0.1:10254")), Err(Refused::OwnListener));
        assert_eq!(g.check(a("[::1]:443")), Err(Refused::OwnListener));
        assert_eq!(
            g.check(a("[::ffff:127.0.0.1]:10254")),
            Err(Refused::OwnListener)
        );
        // Every address of this namespace's interfaces is local.
        for ip in local_addresses() {
            assert_eq!(
                g.check(SocketAddr::new(ip, 80)),
                Err(Refused::OwnListener),
                "{ip}"
            );
        }
        // Other ports, and pods elsewhere, are fine.
        assert_eq!(g.check(a("127.0.0.1:8080")), Ok(()));
        assert_eq!(g.check(a("192.0.2.7:80")), Ok(()));
        assert_eq!(g.check(a("192.0.2.7:10254")), Ok(()));
    }

    #[test]
    fn link_local_and_kube_mode_loopback() {
        let g = UpstreamGuard::new(vec![], true, false);
        assert_eq!(g.check(a("169.254.169.254:80")), Err(Refused::LinkLocal));
        assert_eq!(g.check(a("[fe80::1]:80")), Err(Refused::LinkLocal));
        assert_eq!(g.check(a("127.0.0.1:8080")), Err(Refused::Loopback));
        assert_eq!(g.check(a("[::1]:8080")), Err(Refused::Loopback));
        assert_eq!(g.check(a("10.244.1.2:8080")), Ok(()));
        let allowed = UpstreamGuard::new(vec![], false, true);
        assert_eq!(allowed.check(a("169.254.169.254:80")), Ok(()));
        assert_eq!(allowed.check(a("127.0.0.1:8080")), Ok(()));
    }
}
