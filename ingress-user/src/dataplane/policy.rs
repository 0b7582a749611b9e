//! The XDP policy from the routing snapshot: hosts (with stable ids), allow
//! lists, deny list, SYN rate, strict mode. Each sync writes the difference,
//! upserts first and deletes last, so a host that stays is never unknown
//! during an update.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use aya::maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, lpm_trie::Key};
use ingress_common::{
    AddrKey, AllowKey, Config, F_CONFIG_DENY, F_CONFIG_STRICT_HOSTS, F_HOST_ALLOWLIST, HostKey,
    HostValue, MAX_HOSTS,
};

use super::{DataplaneError, FlowTable};
use crate::model::{Cidr, RoutingTable};

/// The policy maps a `PolicySync` owns.
pub struct PolicyMaps {
    pub hosts: BpfHashMap<MapData, HostKey, HostValue>,
    pub allow: LpmTrie<MapData, AllowKey, u8>,
    pub deny4: LpmTrie<MapData, [u8; 4], u8>,
    pub deny6: LpmTrie<MapData, AddrKey, u8>,
    pub config: Array<MapData, Config>,
}

/// Settings of the XDP policy that come from flags, not from objects.
#[derive(Clone, Debug, Default)]
pub struct PolicyFlags {
    /// `--xdp-deny-cidr`.
    pub deny: Vec<Cidr>,
    /// `--xdp-syn-rate` (SYNs per second per source; 0: off).
    pub syn_rate: u32,
    /// `--xdp-strict-hosts`.
    pub strict_hosts: bool,
}

/// The desired state of the policy maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Host name (wildcards as `*.parent`) → allow list, if XDP enforces one.
    pub hosts: BTreeMap<String, Option<Vec<Cidr>>>,
    pub deny: BTreeSet<Cidr>,
    pub config: Config,
}

impl Policy {
    pub fn new(table: &RoutingTable, flags: &PolicyFlags) -> Self {
        // Strict mode only rejects what nothing would serve.
        let strict = flags.strict_hosts && !table.serves_any_host();
        Self {
            hosts: table.host_policies().into_iter().collect(),
            deny: flags.deny.iter().copied().collect(),
            config: Config {
                syn_rate: flags.syn_rate,
                syn_burst: flags.syn_rate,
                flags: if strict { F_CONFIG_STRICT_HOSTS } else { 0 }
                    | if flags.deny.is_empty() {
                        0
                    } else {
                        F_CONFIG_DENY
                    },
                _pad: 0,
            },
        }
    }
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub upserts: usize,
    pub deletes: usize,
    /// Hosts left out of HOSTS (name longer than the key, or no id left):
    /// their flows are UNDECIDED and the agent decides.
    pub skipped: Vec<String>,
}

/// Host id → name, for metrics and `xingress xdp`.
pub type HostNames = Arc<Mutex<HashMap<u32, String>>>;

pub struct PolicySync {
    maps: PolicyMaps,
    ids: HashMap<String, u32>,
    free: Vec<u32>,
    next_id: u32,
    hosts: HashMap<String, HostValue>,
    allow: BTreeSet<(u32, Cidr)>,
    deny: BTreeSet<Cidr>,
    deny_entries: BTreeSet<DenyEntry>,
    names: HostNames,
    /// To cut tracked flows of sources that become denied.
    flows: Option<FlowTable>,
}

fn allow_key(id: u32, c: &Cidr) -> Key<AllowKey> {
    Key::new(
        32 + u32::from(c.prefix),
        AllowKey {
            host_id_be: id.to_be(),
            addr: c.addr,
        },
    )
}

/// One entry of DENY4 or DENY6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum DenyEntry {
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/// The entries a deny CIDR needs: an IPv4 range goes to DENY4; an IPv6 one
/// to DENY6, and when it spans the whole IPv4-mapped range (`::/0`, say),
/// IPv4 as a whole is denied too.
fn deny_entries(c: &Cidr) -> Vec<DenyEntry> {
    if c.prefix >= 96 && c.addr[..12] == V4_MAPPED_PREFIX {
        let mut v4 = [0; 4];
        v4.copy_from_slice(&c.addr[12..]);
        return vec![DenyEntry::V4(v4, c.prefix - 96)];
    }
    let mut out = vec![DenyEntry::V6(c.addr, c.prefix)];
    if c.prefix <= 96 && c.contains(std::net::Ipv4Addr::UNSPECIFIED.into()) {
        out.push(DenyEntry::V4([0; 4], 0));
    }
    out
}

impl PolicySync {
    pub fn new(maps: PolicyMaps) -> Self {
        Self {
            maps,
            ids: HashMap::new(),
            free: Vec::new(),
            next_id: 1,
            hosts: HashMap::new(),
            allow: BTreeSet::new(),
            deny: BTreeSet::new(),
            deny_entries: BTreeSet::new(),
            names: Arc::default(),
            flows: None,
        }
    }

    /// Lets the sync cut tracked flows of newly denied sources (XDP checks
    /// the deny list for new and untracked flows only).
    pub fn with_flows(mut self, flows: FlowTable) -> Self {
        self.flows = Some(flows);
        self
    }

    pub fn names(&self) -> HostNames {
        self.names.clone()
    }

    fn id_for(&mut self, host: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(host) {
            return Some(*id);
        }
        let id = self.free.pop().or_else(|| {
            (self.next_id < MAX_HOSTS).then(|| {
                self.next_id += 1;
                self.next_id - 1
            })
        })?;
        self.ids.insert(host.to_string(), id);
        Some(id)
    }

    /// Writes the difference between the maps and `policy`.
    pub fn apply(&mut self, policy: &Policy) -> Result<SyncReport, DataplaneError> {
        let mut report = SyncReport::default();
        let mut hosts = HashMap::new();
        let mut allow = BTreeSet::new();
        for (name, list) in &policy.hosts {
            if HostKey::new(name.as_bytes()).is_none() {
                report.skipped.push(name.clone());
                continue;
            }
            let Some(id) = self.id_for(name) else {
                report.skipped.push(name.clone());
                continue;
            };
            let flags = if list.is_some() { F_HOST_ALLOWLIST } else { 0 };
            hosts.insert(name.clone(), HostValue { id, flags });
            for c in list.iter().flatten() {
                allow.insert((id, *c));
            }
        }

        // Upserts: allow entries before the flag that makes XDP consult them.
        for (id, c) in allow.difference(&self.allow) {
            self.maps.allow.insert(&allow_key(*id, c), 1, 0)?;
            report.upserts += 1;
        }
        for (name, value) in &hosts {
            if self.hosts.get(name) != Some(value) {
                let key =
                    HostKey::new(name.as_bytes()).ok_or(DataplaneError::Missing("host key"))?;
                self.maps.hosts.insert(key, *value, 0)?;
                report.upserts += 1;
            }
        }
        let deny_entries: BTreeSet<DenyEntry> = policy.deny.iter().flat_map(deny_entries).collect();
        for e in deny_entries.difference(&self.deny_entries) {
            match *e {
                DenyEntry::V4(a, p) => self.maps.deny4.insert(&Key::new(p.into(), a), 1, 0)?,
                DenyEntry::V6(a, p) => {
                    self.maps
                        .deny6
                        .insert(&Key::new(p.into(), AddrKey { addr: a }), 1, 0)?
                }
            }
            report.upserts += 1;
        }
        self.maps.config.set(0, policy.config, 0)?;
        let newly_denied: Vec<Cidr> = policy.deny.difference(&self.deny).copied().collect();
        if let (Some(flows), false) = (&self.flows, newly_denied.is_empty()) {
            let cut = flows.purge(|client| newly_denied.iter().any(|c| c.contains(client)))?;
            report.deletes += cut;
        }

        // Deletes.
        for e in self.deny_entries.difference(&deny_entries) {
            match *e {
                DenyEntry::V4(a, p) => self.maps.deny4.remove(&Key::new(p.into(), a))?,
                DenyEntry::V6(a, p) => self
                    .maps
                    .deny6
                    .remove(&Key::new(p.into(), AddrKey { addr: a }))?,
            }
            report.deletes += 1;
        }
        let gone: Vec<String> = self
            .hosts
            .keys()
            .filter(|n| !hosts.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(key) = HostKey::new(name.as_bytes()) {
                self.maps.hosts.remove(&key)?;
                report.deletes += 1;
            }
            if let Some(id) = self.ids.remove(&name) {
                self.free.push(id);
            }
        }
        for (id, c) in self.allow.difference(&allow) {
            self.maps.allow.remove(&allow_key(*id, c))?;
            report.deletes += 1;
        }

        if let Ok(mut names) = self.names.lock() {
            *names = hosts.iter().map(|(n, v)| (v.id, n.clone())).collect();
        }
        self.hosts = hosts;
        self.allow = allow;
        self.deny = policy.deny.clone();
        self.deny_entries = deny_entries;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::{DenyEntry, deny_entries};

    #[test]
    fn deny_cidrs_split_by_family() {
        let e = |c: &str| deny_entries(&c.parse().unwrap());
        assert_eq!(e("203.0.113.0/24"), [DenyEntry::V4([203, 0, 113, 0], 24)]);
        assert_eq!(e("0.0.0.0/0"), [DenyEntry::V4([0; 4], 0)]);
        let v6: std::net::Ipv6Addr = "2001:db8::".parse().unwrap();
        assert_eq!(e("2001:db8::/32"), [DenyEntry::V6(v6.octets(), 32)]);
        // Ranges that span ::ffff:0:0/96 take IPv4 along.
        assert_eq!(
            e("::/0"),
            [DenyEntry::V6([0; 16], 0), DenyEntry::V4([0; 4], 0)]
        );
        assert_eq!(e("8000::/1").len(), 1);
    }
}
