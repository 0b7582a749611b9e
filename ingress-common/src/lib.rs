//! Map keys, values, names and limits shared by the XDP program and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding and a compile-time size
//! check; `bytemuck::Pod` is derived so the compiler proves there is no hidden
//! padding. Fields that hold network-order values end in `_be`.
#![no_std]

use bytemuck::{Pod, Zeroable};

/// Name of the hash map of local TCP ports the agent listens on.
pub const MAP_LISTENERS: &str = "LISTENERS";
/// Name of the per-CPU array of packet counters, indexed by [`Stat`].
pub const MAP_STATS: &str = "STATS";

/// Capacity of LISTENERS: an agent listens on a handful of ports.
pub const MAX_LISTENERS: u32 = 64;

/// Listener carries plain HTTP (Host header classification).
pub const F_LISTENER_HTTP: u32 = 1 << 0;
/// Listener carries TLS (SNI classification).
pub const F_LISTENER_TLS: u32 = 1 << 1;

/// Key of LISTENERS: a local TCP port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ListenerKey {
    /// Destination port in network byte order, as read from the TCP header.
    pub port_be: u16,
    pub _pad: u16,
}

/// Value of LISTENERS.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct ListenerValue {
    /// `F_LISTENER_*` bits.
    pub flags: u32,
}

const _: () = assert!(core::mem::size_of::<ListenerKey>() == 4);
const _: () = assert!(core::mem::size_of::<ListenerValue>() == 4);

impl ListenerKey {
    /// Key for a port given in host byte order.
    pub const fn from_port(port: u16) -> Self {
        Self {
            port_be: port.to_be(),
            _pad: 0,
        }
    }
}

/// Index into STATS. Each slot is a per-CPU `u64`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Every packet the program saw.
    Packets = 0,
    /// Packets whose Ethernet/VLAN/IP/TCP headers could not be read in full.
    Malformed = 1,
    /// Packets that were neither IPv4 nor IPv6 (ARP, LLDP, ...).
    NonIp = 2,
    Ipv4 = 3,
    Ipv6 = 4,
    /// IP packets carrying TCP.
    Tcp = 5,
    /// TCP packets to a port in LISTENERS.
    Listener = 6,
    /// Packets with one 802.1Q / 802.1ad tag.
    Vlan = 7,
}

/// Number of slots in STATS.
pub const STAT_COUNT: u32 = 8;

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::Packets,
        Stat::Malformed,
        Stat::NonIp,
        Stat::Ipv4,
        Stat::Ipv6,
        Stat::Tcp,
        Stat::Listener,
        Stat::Vlan,
    ];

    /// Stable lower-case name, used in metrics and CLI output.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Packets => "packets",
            Stat::Malformed => "malformed",
            Stat::NonIp => "non_ip",
            Stat::Ipv4 => "ipv4",
            Stat::Ipv6 => "ipv6",
            Stat::Tcp => "tcp",
            Stat::Listener => "listener",
            Stat::Vlan => "vlan",
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are repr(C), derive bytemuck::Pod (no padding, any
    // bit pattern valid), which is exactly what aya::Pod requires.
    unsafe impl aya::Pod for super::ListenerKey {}
    unsafe impl aya::Pod for super::ListenerValue {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_indices_are_dense_and_in_order() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    #[test]
    fn listener_key_is_network_order() {
        let k = ListenerKey::from_port(80);
        assert_eq!(bytemuck::bytes_of(&k)[..2], [0, 80]);
    }
}
