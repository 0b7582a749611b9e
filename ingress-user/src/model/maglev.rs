//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) for the TCP and
//! UDP services: a table of `MAGLEV_SIZE` slots, each naming an endpoint,
//! that the XDP program and the userspace relay index by a flow's hash.
//! Each endpoint fills the slots of its own permutation (from a hash of its
//! address alone) in turn, so endpoints get equal shares, and an endpoint
//! leaving or joining moves about its own share of slots: the flows of the
//! others keep their pod. Endpoints are taken sorted, so every agent with
//! the same endpoints builds the same table.

use std::net::{IpAddr, SocketAddr};

use ingress_common::MAGLEV_SIZE;

/// A built table: `slots[i]` is an index into the endpoints it was built
/// from.
#[derive(Clone, PartialEq, Eq)]
pub struct Maglev {
    slots: Box<[u16]>,
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maglev")
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// FNV-1a over the bytes from `seed`, then a 64-bit finalizer.
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h
}

/// An endpoint's address as bytes: the IP (4 or 16) and the port.
fn address_bytes(ep: &SocketAddr) -> ([u8; 18], usize) {
    let mut out = [0u8; 18];
    let n = match ep.ip() {
        IpAddr::V4(ip) => {
            out[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            out[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    out[n..n + 2].copy_from_slice(&ep.port().to_be_bytes());
    (out, n + 2)
}

impl Maglev {
    /// The table of `endpoints` (sorted, distinct, 1 to 65,535 of them).
    pub fn new(endpoints: &[SocketAddr]) -> Self {
        let m = MAGLEV_SIZE as usize;
        assert!(!endpoints.is_empty() && endpoints.len() <= usize::from(u16::MAX));
        // Each endpoint's permutation: offset + j * skip (mod m).
        let perm: Vec<(usize, usize)> = endpoints
            .iter()
            .map(|ep| {
                let (bytes, n) = address_bytes(ep);
                let offset = hash(&bytes[..n], 0xCBF2_9CE4_8422_2325) % m as u64;
                let skip = hash(&bytes[..n], 0x8422_2325_CBF2_9CE4) % (m as u64 - 1) + 1;
                (offset as usize, skip as usize)
            })
            .collect();
        let mut next = vec![0usize; endpoints.len()];
        let mut slots = vec![u16::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perm.iter().enumerate() {
                // This endpoint's next preferred slot that is still free.
                let mut c = (offset + next[i] * skip) % m;
                while slots[c] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                slots[c] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        Self {
            slots: slots.into_boxed_slice(),
        }
    }

    /// The endpoint index of a slot (`l4_slot` of a flow).
    pub fn endpoint(&self, slot: u32) -> usize {
        usize::from(self.slots[slot as usize % self.slots.len()])
    }

    /// The whole table, for the XDP map.
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }

    /// Endpoint indices in the order a flow at `slot` tries them when
    /// connecting fails: its own, then the next distinct ones in table
    /// order (deterministic, so retries spread like first choices do). The
    /// scan ends once every endpoint has come (a few slots per endpoint),
    /// not at the end of the table: this runs for every new relayed flow.
    pub fn candidates(&self, slot: u32, endpoints: usize) -> impl Iterator<Item = usize> + '_ {
        let start = slot as usize % self.slots.len();
        let mut seen = vec![false; endpoints];
        (0..self.slots.len())
            .filter_map(move |k| {
                let i = usize::from(self.slots[(start + k) % self.slots.len()]);
                (i < seen.len() && !std::mem::replace(&mut seen[i], true)).then_some(i)
            })
            .take(endpoints)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 9000)))
            .collect()
    }

    fn shares(t: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for s in t.slots() {
            c[usize::from(*s)] += 1;
        }
        c
    }

    #[test]
    fn every_slot_is_filled_and_shares_are_equal() {
        for n in [1u8, 2, 3, 7, 50] {
            let t = Maglev::new(&eps(n));
            let c = shares(&t, n.into());
            let ideal = MAGLEV_SIZE as usize / usize::from(n);
            for (i, k) in c.iter().enumerate() {
                assert!(
                    k.abs_diff(ideal) <= 1,
                    "{n} endpoints: #{i} has {k}, ideal {ideal}"
                );
            }
        }
    }

    #[test]
    fn an_endpoint_leaving_moves_only_its_own_slots_and_little_else() {
        let all = eps(10);
        let before = Maglev::new(&all);
        let mut rest = all.clone();
        let gone = rest.remove(3);
        let after = Maglev::new(&rest);
        let mut moved_elsewhere = 0;
        for (b, a) in before.slots().iter().zip(after.slots()) {
            let (b, a) = (all[usize::from(*b)], rest[usize::from(*a)]);
            if b != gone && b != a {
                moved_elsewhere += 1;
            }
        }
        // The paper's bound is a few percent of the table for M >> N.
        assert!(
            moved_elsewhere < MAGLEV_SIZE as usize / 50,
            "{moved_elsewhere} slots of staying endpoints moved"
        );
        // Adding one back: the same table as before (no history).
        assert_eq!(Maglev::new(&all), before);
    }

    #[test]
    fn ipv6_endpoints_and_ports_count() {
        let a: SocketAddr = "[2001:db8::1]:53".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:54".parse().unwrap();
        let t = Maglev::new(&[a, b]);
        let c = shares(&t, 2);
        assert!(c[0].abs_diff(c[1]) <= 1);
    }

    #[test]
    fn candidates_start_at_the_slot_and_list_each_endpoint_once() {
        let t = Maglev::new(&eps(4));
        for slot in [0, 17, MAGLEV_SIZE - 1] {
            let c: Vec<usize> = t.candidates(slot, 4).collect();
            assert_eq!(c[0], t.endpoint(slot));
            let mut sorted = c.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3]);
        }
    }
}
