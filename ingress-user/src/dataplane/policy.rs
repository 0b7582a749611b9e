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
    pub deny: LpmTrie<MapData, AddrKey, u8>,
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

fn deny_key(c: &Cidr) -> Key<AddrKey> {
    Key::new(u32::from(c.prefix), AddrKey { addr: c.addr })
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
        for c in policy.deny.difference(&self.deny) {
            self.maps.deny.insert(&deny_key(c), 1, 0)?;
            report.upserts += 1;
        }
        self.maps.config.set(0, policy.config, 0)?;
        let newly_denied: Vec<Cidr> = policy.deny.difference(&self.deny).copied().collect();
        if let (Some(flows), false) = (&self.flows, newly_denied.is_empty()) {
            let cut =
                flows.purge(|k| newly_denied.iter().any(|c| c.contains(super::addr(k.src))))?;
            report.deletes += cut;
        }

        // Deletes.
        for c in self.deny.difference(&policy.deny) {
            self.maps.deny.remove(&deny_key(c))?;
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
        Ok(report)
    }
}
