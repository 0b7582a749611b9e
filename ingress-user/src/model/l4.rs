//! TCP and UDP services exposed by port: ingress-nginx's `tcp-services`
//! and `udp-services` ConfigMaps (`--tcp-services-configmap`,
//! `--udp-services-configmap`), each key a port of the node and each value
//! `NAMESPACE/SERVICE:PORT[:PROXY][:PROXY]`: the Service's port (number or
//! name), then PROXY protocol decoding on the listener (the first `PROXY`)
//! and encoding towards the pod (the second), as ingress-nginx reads them.
//! A service resolves to its ready endpoints and their Maglev table.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde::Serialize;

use super::{NamespacedName, maglev::Maglev};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum L4Protocol {
    Tcp,
    Udp,
}

impl L4Protocol {
    /// As Services write it (`TCP`, `UDP`).
    pub fn label(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "TCP",
            L4Protocol::Udp => "UDP",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => ingress_common::L4_PROTO_TCP,
            L4Protocol::Udp => ingress_common::L4_PROTO_UDP,
        }
    }

    /// The ConfigMap flag that names such services.
    pub fn flag(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "--tcp-services-configmap",
            L4Protocol::Udp => "--udp-services-configmap",
        }
    }
}

/// One entry of a services ConfigMap, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Entry {
    pub port: u16,
    pub service: NamespacedName,
    /// The Service port: a number or a name.
    pub service_port: String,
    pub decode_proxy: bool,
    pub encode_proxy: bool,
}

/// Parses `key: value` of a services ConfigMap; the error says what is
/// wrong with it.
pub fn parse_entry(key: &str, value: &str) -> Result<L4Entry, String> {
    let port = match key.trim().parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("the key {key:?} is not a port (1 to 65535)")),
    };
    let mut parts = value.trim().split(':');
    let target = parts.next().unwrap_or_default();
    let service = match target.split_once('/') {
        Some((ns, name)) if is_dns_label(ns) && is_dns_label(name) => NamespacedName::new(ns, name),
        _ => {
            return Err(format!(
                "{target:?} is not NAMESPACE/SERVICE (expected NAMESPACE/SERVICE:PORT[:PROXY][:PROXY])"
            ));
        }
    };
    let service_port = match parts.next() {
        // A number is a port; a name (IANA_SVC_NAME) has a letter.
        Some(p)
            if p.parse::<u16>().is_ok_and(|n| n > 0)
                || (is_dns_label(p) && p.bytes().any(|b| b.is_ascii_lowercase())) =>
        {
            p.to_string()
        }
        Some(p) => {
            return Err(format!(
                "{p:?} is not a Service port (a number or a port name)"
            ));
        }
        None => {
            return Err(
                "no Service port (expected NAMESPACE/SERVICE:PORT[:PROXY][:PROXY])".to_string(),
            );
        }
    };
    let mut proxy = [false; 2];
    for (i, flag) in proxy.iter_mut().enumerate() {
        match parts.next() {
            None | Some("") => {}
            Some(p) if p.eq_ignore_ascii_case("PROXY") => *flag = true,
            Some(p) => {
                return Err(format!(
                    "field {} is {p:?}: only PROXY (or nothing) may stand there",
                    i + 3
                ));
            }
        }
    }
    if parts.next().is_some() {
        return Err("more than four fields (NAMESPACE/SERVICE:PORT[:PROXY][:PROXY])".to_string());
    }
    Ok(L4Entry {
        port,
        service,
        service_port,
        decode_proxy: proxy[0],
        encode_proxy: proxy[1],
    })
}

/// RFC 1123 label (namespaces, Service and port names).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A TCP or UDP service of the node: where its flows go.
#[derive(Debug)]
pub struct L4Service {
    pub protocol: L4Protocol,
    /// The node's port.
    pub port: u16,
    pub service: NamespacedName,
    pub service_port: String,
    /// The listener expects a PROXY protocol header (TCP only).
    pub decode_proxy: bool,
    /// The pod gets a PROXY protocol v1 header first (TCP only).
    pub encode_proxy: bool,
    /// Ready endpoints, sorted; empty: no pod to send to.
    pub endpoints: Vec<SocketAddr>,
    /// Over `endpoints`; `None` when there is none.
    pub maglev: Option<Maglev>,
}

impl L4Service {
    pub fn new(entry: L4Entry, protocol: L4Protocol, mut endpoints: Vec<SocketAddr>) -> Self {
        endpoints.sort();
        endpoints.dedup();
        let maglev = (!endpoints.is_empty()).then(|| Maglev::new(&endpoints));
        Self {
            protocol,
            port: entry.port,
            service: entry.service,
            service_port: entry.service_port,
            decode_proxy: entry.decode_proxy,
            encode_proxy: entry.encode_proxy,
            endpoints,
            maglev,
        }
    }

    /// The endpoints a flow hashed to `slot` tries, in order.
    pub fn candidates(&self, slot: u32) -> Vec<SocketAddr> {
        match &self.maglev {
            Some(m) => m
                .candidates(slot, self.endpoints.len())
                .map(|i| self.endpoints[i])
                .collect(),
            None => Vec::new(),
        }
    }

    /// `TCP 5432 → db/postgres:5432`, for logs.
    pub fn describe(&self) -> String {
        format!(
            "{} {} → {}:{}",
            self.protocol.label(),
            self.port,
            self.service,
            self.service_port
        )
    }
}

/// ingress-nginx's `proxy-stream-*` keys: how the relay treats a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// `proxy-stream-timeout` (600s): a connection (or UDP session) with no
    /// byte either way for this long is closed.
    pub timeout: Duration,
    /// `proxy-stream-next-upstream` (on): a pod that cannot be connected
    /// to is replaced by the next one.
    pub next_upstream: bool,
    /// `proxy-stream-next-upstream-tries` (3; 0: every endpoint).
    pub tries: u32,
    /// `proxy-stream-next-upstream-timeout` (600s; 0: no limit).
    pub next_upstream_timeout: Duration,
    /// `proxy-stream-responses` (1; 0: unlimited): datagrams a UDP session
    /// expects back per datagram sent; once they have come, it ends.
    pub responses: u32,
    /// `proxy-connect-timeout` (5 s): one connection attempt to a pod.
    pub connect_timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            next_upstream: true,
            tries: 3,
            next_upstream_timeout: Duration::from_secs(600),
            responses: 1,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The L4 services of a snapshot.
#[derive(Debug, Default)]
pub struct L4Table {
    /// By protocol, then port.
    pub services: Vec<Arc<L4Service>>,
    pub stream: StreamSettings,
}

impl L4Table {
    pub fn get(&self, protocol: L4Protocol, port: u16) -> Option<&Arc<L4Service>> {
        self.services
            .binary_search_by(|s| (s.protocol, s.port).cmp(&(protocol, port)))
            .ok()
            .map(|i| &self.services[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_as_ingress_nginx_writes_them() {
        let e = parse_entry("9000", "default/example-go:8080").unwrap();
        assert_eq!(e.port, 9000);
        assert_eq!(e.service, NamespacedName::new("default", "example-go"));
        assert_eq!(e.service_port, "8080");
        assert!(!e.decode_proxy && !e.encode_proxy);
        let e = parse_entry("5432", "db/postgres:pg:PROXY").unwrap();
        assert_eq!(e.service_port, "pg");
        assert!(e.decode_proxy && !e.encode_proxy);
        let e = parse_entry("5432", "db/postgres:5432::PROXY").unwrap();
        assert!(!e.decode_proxy && e.encode_proxy);
        let e = parse_entry(" 53 ", "kube-system/dns:53:proxy:PROXY").unwrap();
        assert!(e.decode_proxy && e.encode_proxy);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (k, v, says) in [
            ("http", "a/b:1", "not a port"),
            ("0", "a/b:1", "not a port"),
            ("70000", "a/b:1", "not a port"),
            ("9000", "b:1", "NAMESPACE/SERVICE"),
            ("9000", "A/b:1", "NAMESPACE/SERVICE"),
            ("9000", "a/b", "no Service port"),
            ("9000", "a/b:", "not a Service port"),
            ("9000", "a/b:0", "not a Service port"),
            ("9000", "a/b:1:PROXI", "only PROXY"),
            ("9000", "a/b:1:PROXY:PROXY:x", "more than four"),
        ] {
            let e = parse_entry(k, v).unwrap_err();
            assert!(e.contains(says), "{k}: {v}: {e}");
        }
    }

    #[test]
    fn services_are_found_by_protocol_and_port() {
        let entry = |port: u16| parse_entry(&port.to_string(), "a/b:1").unwrap();
        let ep: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut services = vec![
            Arc::new(L4Service::new(entry(53), L4Protocol::Udp, vec![ep])),
            Arc::new(L4Service::new(entry(53), L4Protocol::Tcp, vec![ep, ep])),
            Arc::new(L4Service::new(entry(9000), L4Protocol::Tcp, vec![])),
        ];
        services.sort_by_key(|s| (s.protocol, s.port));
        let t = L4Table {
            services,
            stream: StreamSettings::default(),
        };
        assert_eq!(
            t.get(L4Protocol::Udp, 53).unwrap().protocol,
            L4Protocol::Udp
        );
        assert_eq!(t.get(L4Protocol::Tcp, 53).unwrap().endpoints, vec![ep]);
        assert!(t.get(L4Protocol::Tcp, 9000).unwrap().maglev.is_none());
        assert!(t.get(L4Protocol::Udp, 9000).is_none());
    }
}
