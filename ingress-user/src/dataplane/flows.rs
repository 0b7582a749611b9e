//! The FLOWS map from userspace: listing (for `xingress xdp flows`) and the
//! agent's verdict for flows XDP left UNDECIDED.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use ingress_common::{FlowKey, FlowValue, VERDICT_UNDECIDED};

use super::DataplaneError;
use crate::model::cidr::mapped;

/// Shared handle on FLOWS (map syscalls only; never on the per-request path).
#[derive(Clone)]
pub struct FlowTable {
    map: Arc<Mutex<BpfHashMap<MapData, FlowKey, FlowValue>>>,
}

/// The key of the flow `client` → `local`.
pub fn flow_key(client: SocketAddr, local: SocketAddr) -> FlowKey {
    FlowKey {
        src: mapped(client.ip().to_canonical()),
        dst: mapped(local.ip().to_canonical()),
        src_port_be: client.port().to_be(),
        dst_port_be: local.port().to_be(),
        _pad: [0; 4],
    }
}

/// A 16-byte map address as an `IpAddr` (IPv4 when mapped).
pub fn addr(bytes: [u8; 16]) -> IpAddr {
    Ipv6Addr::from(bytes).to_canonical()
}

impl FlowTable {
    pub fn new(map: BpfHashMap<MapData, FlowKey, FlowValue>) -> Self {
        Self {
            map: Arc::new(Mutex::new(map)),
        }
    }

    /// Every tracked flow.
    pub fn list(&self) -> Vec<(FlowKey, FlowValue)> {
        let Ok(map) = self.map.lock() else {
            return Vec::new();
        };
        map.iter().filter_map(Result::ok).collect()
    }

    pub fn get(&self, client: SocketAddr, local: SocketAddr) -> Option<FlowValue> {
        let map = self.map.lock().ok()?;
        map.get(&flow_key(client, local), 0).ok()
    }

    /// Deletes the flows `doomed` picks; returns how many.
    pub fn purge(&self, doomed: impl Fn(&FlowKey) -> bool) -> Result<usize, DataplaneError> {
        let Ok(mut map) = self.map.lock() else {
            return Ok(0);
        };
        let keys: Vec<FlowKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| doomed(k))
            .collect();
        for k in &keys {
            // A flow may have retired meanwhile.
            let _ = map.remove(k);
        }
        Ok(keys.len())
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
        let Ok(mut map) = self.map.lock() else {
            return Ok(false);
        };
        let key = flow_key(client, local);
        let Ok(mut flow) = map.get(&key, 0) else {
            return Ok(false);
        };
        if flow.verdict != VERDICT_UNDECIDED {
            return Ok(false);
        }
        flow.verdict = verdict;
        flow.reason = reason;
        map.insert(key, flow, 0)?;
        Ok(true)
    }
}
