//! Every map of the program, declared once. Names and sizes come from
//! ingress-common so the agent opens exactly these.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use ingress_common::{ListenerKey, ListenerValue, MAX_LISTENERS, STAT_COUNT, Stat};

/// Local TCP ports the agent serves; filled by the agent from its listen addresses.
#[map]
pub static LISTENERS: HashMap<ListenerKey, ListenerValue> =
    HashMap::with_max_entries(MAX_LISTENERS, 0);

/// Per-CPU packet counters, indexed by `ingress_common::Stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

/// Adds one to a counter of this CPU (no atomics needed: the slot is per CPU).
#[inline(always)]
pub fn bump(stat: Stat) {
    if let Some(slot) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: the pointer comes from a successful lookup of this CPU's slot.
        unsafe { *slot += 1 };
    }
}

/// Flags of a listener on `port_be`, if the agent registered one.
#[inline(always)]
pub fn listener(port_be: u16) -> Option<u32> {
    let key = ListenerKey { port_be, _pad: 0 };
    // SAFETY: the value is a plain u32 copied out at once.
    unsafe { LISTENERS.get(key) }.map(|v| v.flags)
}
