//! The flow maps (FLOWS4, FLOWS6) from userspace: listing (for `xingress xdp
//! flows`), purging the flows of newly denied sources, and the agent's
//! verdict for flows XDP left UNDECIDED. Listings add the packets the
//! per-CPU flow caches (FLOW_CACHE) counted and not yet moved to FLOWS.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray};
use ingress_common::{FlowCacheEntry, FlowKey4, FlowKey6, FlowValue, VERDICT_UNDECIDED};

use super::DataplaneError;

pub type Flows4 = BpfHashMap<MapData, FlowKey4, FlowValue>;
pub type Flows6 = BpfHashMap<MapData, FlowKey6, FlowValue>;
pub type FlowCache = PerCpuArray<MapData, FlowCacheEntry>;

/// Shared handle on both flow maps and the flow cache (map syscalls only;
/// never on the per-request path).
#[derive(Clone)]
pub struct FlowTable {
    maps: Arc<Mutex<(Flows4, Flows6)>>,
    cache: Arc<FlowCache>,
}

/// One tracked flow: client → local.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub value: FlowValue,
}

/// A flow key of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowKey {
    V4(FlowKey4),
    V6(FlowKey6),
}

impl FlowKey {
    /// The key of the flow `client` → `local` (IPv4-mapped IPv6 counts as
    /// IPv4, as the kernel sees such a connection on the wire).
    pub fn new(client: SocketAddr, local: SocketAddr) -> Self {
        match (client.ip().to_canonical(), local.ip().to_canonical()) {
            (IpAddr::V4(c), IpAddr::V4(l)) => FlowKey::V4(FlowKey4 {
                src: c.octets(),
                dst: l.octets(),
                src_port_be: client.port().to_be(),
                dst_port_be: local.port().to_be(),
            }),
            (c, l) => FlowKey::V6(FlowKey6 {
                src: v6(c).octets(),
                dst: v6(l).octets(),
                src_port_be: client.port().to_be(),
                dst_port_be: local.port().to_be(),
            }),
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// client and local socket addresses of a v4 key.
pub fn sockets4(k: &FlowKey4) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(IpAddr::from(k.src), u16::from_be(k.src_port_be)),
        SocketAddr::new(IpAddr::from(k.dst), u16::from_be(k.dst_port_be)),
    )
}

/// client and local socket addresses of a v6 key.
pub fn sockets6(k: &FlowKey6) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(addr(k.src), u16::from_be(k.src_port_be)),
        SocketAddr::new(addr(k.dst), u16::from_be(k.dst_port_be)),
    )
}

/// A 16-byte map address as an `IpAddr` (IPv4 when mapped).
pub fn addr(bytes: [u8; 16]) -> IpAddr {
    Ipv6Addr::from(bytes).to_canonical()
}

/// Every flow of both maps, with what the flow caches counted since.
pub fn list(v4: &Flows4, v6: &Flows6, cache: &FlowCache) -> Vec<Flow> {
    let flow = |(client, local), value| Flow {
        client,
        local,
        value,
    };
    let mut flows: Vec<Flow> = v4
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| flow(sockets4(&k), v))
        .chain(
            v6.iter()
                .filter_map(Result::ok)
                .map(|(k, v)| flow(sockets6(&k), v)),
        )
        .collect();
    let cached = cached_counts(cache);
    for f in &mut flows {
        if let Some(entries) = cached.get(&FlowKey::new(f.client, f.local)) {
            add_cached(entries, &mut f.value);
        }
    }
    flows
}

/// The counts every CPU's flow cache holds, by flow key.
fn cached_counts(cache: &FlowCache) -> HashMap<FlowKey, Vec<FlowCacheEntry>> {
    let mut by_key: HashMap<FlowKey, Vec<FlowCacheEntry>> = HashMap::new();
    for slot in cache.iter().filter_map(Result::ok) {
        for e in slot.iter().filter(|e| e.packets != 0) {
            if let Some(key) = entry_key(e) {
                by_key.entry(key).or_default().push(*e);
            }
        }
    }
    by_key
}

/// Adds to `value` the cached counts of the same flow (same first packet:
/// a cached copy of an earlier flow on the same 5-tuple does not count).
fn add_cached(entries: &[FlowCacheEntry], value: &mut FlowValue) {
    for e in entries {
        if e.first_seen_ns == value.first_seen_ns {
            value.packets += e.packets;
            value.bytes += e.bytes;
            value.last_seen_ns = value.last_seen_ns.max(e.last_seen_ns);
        }
    }
}

/// The cached counts of one flow, from its slot on every CPU.
fn cached_for(cache: &FlowCache, key: FlowKey) -> Vec<FlowCacheEntry> {
    let slot = match key {
        FlowKey::V4(k) => ingress_common::flow_cache_slot(&k.words()),
        FlowKey::V6(k) => ingress_common::flow_cache_slot(&k.words()),
    };
    // Another flow may hold the slot.
    cache
        .get(&slot, 0)
        .map(|v| {
            v.iter()
                .filter(|e| entry_key(e) == Some(key))
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

/// The key of the flow a cache entry holds, if any.
fn entry_key(e: &FlowCacheEntry) -> Option<FlowKey> {
    match (e.key4(), e.key6()) {
        (Some(k), _) => Some(FlowKey::V4(k)),
        (_, Some(k)) => Some(FlowKey::V6(k)),
        _ => None,
    }
}

impl FlowTable {
    pub fn new(v4: Flows4, v6: Flows6, cache: FlowCache) -> Self {
        Self {
            maps: Arc::new(Mutex::new((v4, v6))),
            cache: Arc::new(cache),
        }
    }

    /// Every tracked flow.
    pub fn list(&self) -> Vec<Flow> {
        let Ok(maps) = self.maps.lock() else {
            return Vec::new();
        };
        list(&maps.0, &maps.1, &self.cache)
    }

    /// One flow, with what the flow caches counted since FLOWS last had it.
    pub fn get(&self, client: SocketAddr, local: SocketAddr) -> Option<FlowValue> {
        let maps = self.maps.lock().ok()?;
        let key = FlowKey::new(client, local);
        let mut value = match key {
            FlowKey::V4(k) => maps.0.get(&k, 0).ok(),
            FlowKey::V6(k) => maps.1.get(&k, 0).ok(),
        }?;
        add_cached(&cached_for(&self.cache, key), &mut value);
        Some(value)
    }

    /// Deletes the flows of the clients `doomed` picks; returns how many.
    pub fn purge(&self, doomed: impl Fn(IpAddr) -> bool) -> Result<usize, DataplaneError> {
        let Ok(mut maps) = self.maps.lock() else {
            return Ok(0);
        };
        let (v4, v6) = &mut *maps;
        let keys4: Vec<FlowKey4> = v4
            .keys()
            .filter_map(Result::ok)
            .filter(|k| doomed(IpAddr::from(k.src)))
            .collect();
        let keys6: Vec<FlowKey6> = v6
            .keys()
            .filter_map(Result::ok)
            .filter(|k| doomed(addr(k.src)))
            .collect();
        // A flow may have retired meanwhile.
        for k in &keys4 {
            let _ = v4.remove(k);
        }
        for k in &keys6 {
            let _ = v6.remove(k);
        }
        Ok(keys4.len() + keys6.len())
    }

    /// Records the agent's verdict on a flow XDP could not decide; flows XDP
    /// decided keep their verdict. Returns whether it wrote.
    pub fn decide_undecided(
        &self,
        client: SocketAddr,
        local: SocketAddr,
        verdict: u8,
        reason: u8,
    ) -> Result<bool, DataplaneError> {
        let Ok(mut maps) = self.maps.lock() else {
            return Ok(false);
        };
        let decide = |mut flow: FlowValue| {
            (flow.verdict == VERDICT_UNDECIDED).then(|| {
                flow.verdict = verdict;
                flow.reason = reason;
                flow
            })
        };
        match FlowKey::new(client, local) {
            FlowKey::V4(k) => match maps.0.get(&k, 0).ok().and_then(decide) {
                Some(flow) => maps.0.insert(k, flow, 0)?,
                None => return Ok(false),
            },
            FlowKey::V6(k) => match maps.1.get(&k, 0).ok().and_then(decide) {
                Some(flow) => maps.1.insert(k, flow, 0)?,
                None => return Ok(false),
            },
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_wire_family() {
        let c: SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let l: SocketAddr = "[::ffff:198.18.0.1]:443".parse().unwrap();
        let FlowKey::V4(k) = FlowKey::new(c, l) else {
            panic!("IPv4-mapped is IPv4 on the wire")
        };
        assert_eq!(sockets4(&k), (c, "198.18.0.1:443".parse().unwrap()));
        let c6: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let l6: SocketAddr = "[2001:db8::2]:443".parse().unwrap();
        let FlowKey::V6(k) = FlowKey::new(c6, l6) else {
            panic!("IPv6")
        };
        assert_eq!(sockets6(&k), (c6, l6));
        assert_eq!(k.src_port_be, 40000u16.to_be());
    }
}
