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
    AddrKey, AllowKey, Config, DENY4_PART, DENY4_WHOLE, F_CONFIG_DENY, F_CONFIG_STRICT_HOSTS,
    F_HOST_ALLOWLIST, HostKey, HostValue, MAX_HOSTS, deny4_slot,
};

use super::{DataplaneError, FlowTable};
use crate::model::{Cidr, RoutingTable};

/// The policy maps a `PolicySync` owns.
pub struct PolicyMaps {
    pub hosts: BpfHashMap<MapData, HostKey, HostValue>,
    pub allow: LpmTrie<MapData, AllowKey, u8>,
    pub deny4: LpmTrie<MapData, [u8; 4], u8>,
    pub deny6: LpmTrie<MapData, AddrKey, u8>,
    pub deny4_index: Array<MapData, u64>,
    pub config: Array<MapData, Config>,
}

pub use crate::config::PolicyFlags;

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
        // `--xdp-deny-cidr` and the ConfigMap's `block-cidrs`.
        let deny: BTreeSet<Cidr> = flags
            .deny
            .iter()
            .chain(table.block_cidrs.iter())
            .copied()
            .collect();
        Self {
            hosts: table.host_policies().into_iter().collect(),
            config: Config {
                syn_rate: flags.syn_rate,
                syn_burst: flags.syn_rate,
                flags: if strict { F_CONFIG_STRICT_HOSTS } else { 0 }
                    | if deny.is_empty() { 0 } else { F_CONFIG_DENY },
                // PolicySync owns the generation.
                flow_gen: 0,
            },
            deny,
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
    /// The non-zero words of DENY4_INDEX.
    deny4_index: HashMap<u32, u64>,
    names: HostNames,
    /// To cut tracked flows of sources that become denied.
    flows: Option<FlowTable>,
    /// `Config::flow_gen`: bumped after each purge of FLOWS.
    flow_gen: u32,
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

/// The non-zero words of DENY4_INDEX for these entries: each /24 is
/// DENY4_WHOLE when a prefix of /24 or shorter covers it, else DENY4_PART
/// when a longer prefix falls inside it (XDP then asks DENY4).
fn deny4_index(entries: &BTreeSet<DenyEntry>) -> HashMap<u32, u64> {
    const WHOLE_WORD: u64 = 0x5555_5555_5555_5555;
    let mut words: HashMap<u32, u64> = HashMap::new();
    let v4 = || {
        entries.iter().filter_map(|e| match *e {
            DenyEntry::V4(a, p) => Some((a, p)),
            DenyEntry::V6(..) => None,
        })
    };
    for (addr, prefix) in v4().filter(|(_, p)| *p <= 24) {
        let (word, shift) = deny4_slot(addr);
        if prefix <= 19 {
            // 32 or more /24s: whole words.
            let count = 1u32 << (19 - prefix);
            let first = word & !(count - 1);
            for w in first..first + count {
                words.insert(w, WHOLE_WORD);
            }
        } else {
            let count = 1u32 << (24 - prefix);
            let first = (shift / 2) & !(count - 1);
            let w = words.entry(word).or_default();
            for i in first..first + count {
                *w = (*w & !(0b11 << (2 * i))) | DENY4_WHOLE << (2 * i);
            }
        }
    }
    for (addr, _) in v4().filter(|(_, p)| *p > 24) {
        let (word, shift) = deny4_slot(addr);
        let w = words.entry(word).or_default();
        if (*w >> shift) & 0b11 == 0 {
            *w |= DENY4_PART << shift;
        }
    }
    words.retain(|_, w| *w != 0);
    words
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
            deny4_index: HashMap::new(),
            names: Arc::default(),
            flows: None,
            flow_gen: 0,
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
        // The index after DENY4 has the new entries and before it loses the
        // old ones: a /24 marked PART always finds what it needs there. The
        // list comes from flags and rarely changes: a reload that keeps it
        // does not rebuild the index (up to 2^19 words for a /0).
        if deny_entries != self.deny_entries {
            let deny4_index = deny4_index(&deny_entries);
            for (word, value) in &deny4_index {
                if self.deny4_index.get(word) != Some(value) {
                    self.maps.deny4_index.set(*word, *value, 0)?;
                    report.upserts += 1;
                }
            }
            for word in self.deny4_index.keys() {
                if !deny4_index.contains_key(word) {
                    self.maps.deny4_index.set(*word, 0, 0)?;
                    report.deletes += 1;
                }
            }
            self.deny4_index = deny4_index;
        }
        let config = |flow_gen| Config {
            flow_gen,
            ..policy.config
        };
        self.maps.config.set(0, config(self.flow_gen), 0)?;
        let newly_denied: Vec<Cidr> = policy.deny.difference(&self.deny).copied().collect();
        if let (Some(flows), false) = (&self.flows, newly_denied.is_empty()) {
            let cut = flows.purge(|client| newly_denied.iter().any(|c| c.contains(client)))?;
            report.deletes += cut;
            // After the purge: the flow caches drop what they hold, and a
            // packet of a purged flow finds no FLOWS entry (it meets the
            // deny list as an untracked packet).
            self.flow_gen = self.flow_gen.wrapping_add(1);
            self.maps.config.set(0, config(self.flow_gen), 0)?;
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
    use super::{DenyEntry, deny_entries, deny4_index};
    use ingress_common::{DENY4_INDEX_WORDS, DENY4_PART, DENY4_WHOLE, deny4_slot};
    use std::collections::BTreeSet;

    /// The index state of `addr`'s /24 for these CIDRs.
    fn state(cidrs: &[&str], addr: [u8; 4]) -> u64 {
        let entries: BTreeSet<DenyEntry> = cidrs
            .iter()
            .flat_map(|c| deny_entries(&c.parse().unwrap()))
            .collect();
        let (word, shift) = deny4_slot(addr);
        deny4_index(&entries)
            .get(&word)
            .map_or(0, |w| (w >> shift) & 0b11)
    }

    #[test]
    fn deny4_index_marks_each_slash24_whole_part_or_none() {
        let one = ["203.0.113.0/24"];
        assert_eq!(state(&one, [203, 0, 113, 9]), DENY4_WHOLE);
        assert_eq!(state(&one, [203, 0, 112, 9]), 0);
        assert_eq!(state(&one, [203, 0, 114, 9]), 0);
        // Longer prefixes make their /24 PART; a covering prefix wins.
        let part = ["198.51.100.7/32", "198.51.100.64/26"];
        assert_eq!(state(&part, [198, 51, 100, 200]), DENY4_PART);
        assert_eq!(state(&part, [198, 51, 101, 1]), 0);
        let both = ["10.1.2.3/32", "10.0.0.0/15"];
        assert_eq!(state(&both, [10, 1, 2, 99]), DENY4_WHOLE);
        assert_eq!(state(&both, [10, 0, 0, 1]), DENY4_WHOLE);
        assert_eq!(state(&both, [10, 2, 0, 1]), 0);
        // Prefixes between /20 and /24 fill part of a word, /19 and shorter whole words.
        let p22 = ["192.0.4.0/22"];
        for (third, want) in [(3, 0), (4, DENY4_WHOLE), (7, DENY4_WHOLE), (8, 0)] {
            assert_eq!(state(&p22, [192, 0, third, 1]), want, "192.0.{third}.1");
        }
        let p12 = ["172.16.0.0/12"];
        for (a, want) in [
            ([172, 15, 255, 1], 0),
            ([172, 16, 0, 1], DENY4_WHOLE),
            ([172, 31, 255, 1], DENY4_WHOLE),
            ([172, 32, 0, 1], 0),
        ] {
            assert_eq!(state(&p12, a), want, "{a:?}");
        }
        // Everything: every word, and nothing for an IPv6-only list.
        let all: BTreeSet<DenyEntry> = deny_entries(&"0.0.0.0/0".parse().unwrap())
            .into_iter()
            .collect();
        assert_eq!(deny4_index(&all).len(), DENY4_INDEX_WORDS as usize);
        assert_eq!(state(&["2001:db8::/32"], [0, 0, 0, 1]), 0);
    }

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

#[cfg(test)]
mod block_cidrs_tests {
    use super::*;

    /// The ConfigMap's `block-cidrs` join `--xdp-deny-cidr` in XDP's deny
    /// list, and switch the deny check on.
    #[test]
    fn block_cidrs_join_the_deny_list() {
        let flags = PolicyFlags {
            deny: vec!["198.51.100.0/24".parse().unwrap()],
            ..PolicyFlags::default()
        };
        let mut table = RoutingTable::default();
        let none = Policy::new(&table, &PolicyFlags::default());
        assert_eq!(none.config.flags & F_CONFIG_DENY, 0);
        table.block_cidrs = vec!["192.0.2.0/24".parse().unwrap()].into();
        let p = Policy::new(&table, &PolicyFlags::default());
        assert_ne!(p.config.flags & F_CONFIG_DENY, 0);
        assert!(p.deny.contains(&"192.0.2.0/24".parse().unwrap()));
        let both = Policy::new(&table, &flags);
        assert_eq!(both.deny.len(), 2);
    }
}
