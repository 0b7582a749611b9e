//! L4 steering of TCP and UDP services (ingress-nginx's `tcp-services` and
//! `udp-services`): the Maglev table size and the flow hash. The XDP
//! program and the agent's userspace relay both choose a new flow's
//! endpoint as `table[l4_flow_hash(words) % MAGLEV_SIZE]`, so a flow lands
//! on the same pod whichever path serves it, and on every edge node that
//! has the same endpoints (ECMP in front of several nodes).

/// Slots of a service's Maglev table: a prime (the permutations need it)
/// about 100 times the endpoints a service is expected to have, so each
/// endpoint's share stays within about 1% of the others'.
pub const MAGLEV_SIZE: u32 = 16_381;

pub const L4_PROTO_TCP: u8 = 6;
pub const L4_PROTO_UDP: u8 = 17;

/// The words a flow is hashed by: the client's address as it sits in the
/// packet (1 word for IPv4, 4 for IPv6, each read in native order), then
/// both ports in network order as one word (client port first, as in the
/// TCP/UDP header), then the protocol.
#[inline(always)]
pub fn l4_flow_words4(client: [u8; 4], ports_word: u32, proto: u8) -> [u32; 3] {
    [u32::from_ne_bytes(client), ports_word, u32::from(proto)]
}

/// As [`l4_flow_words4`], for an IPv6 client.
#[inline(always)]
pub fn l4_flow_words6(client: [u8; 16], ports_word: u32, proto: u8) -> [u32; 6] {
    let w = |i: usize| u32::from_ne_bytes([client[i], client[i + 1], client[i + 2], client[i + 3]]);
    [w(0), w(4), w(8), w(12), ports_word, u32::from(proto)]
}

/// The ports word of a flow: the first four bytes of its TCP or UDP
/// header (source port, destination port, network order) read as one
/// native-order word.
#[inline(always)]
pub fn l4_ports_word(client_port: u16, service_port: u16) -> u32 {
    let (c, s) = (client_port.to_be_bytes(), service_port.to_be_bytes());
    u32::from_ne_bytes([c[0], c[1], s[0], s[1]])
}

/// A flow's 32-bit hash: products of the words with odd constants, summed
/// (independent multiplies, cheap in BPF), then a full 64-bit finalizer so
/// every input bit reaches the top half that is kept.
#[inline(always)]
pub fn l4_flow_hash(words: &[u32]) -> u32 {
    const K: [u64; 6] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0x85EB_CA77_C2B2_AE63,
        0x27D4_EB2F_1656_67C5,
        0xFF51_AFD7_ED55_8CCD,
    ];
    let mut h = 0u64;
    for (w, k) in words.iter().zip(K) {
        h = h.wrapping_add(u64::from(*w).wrapping_mul(k));
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    (h >> 32) as u32
}

/// The Maglev slot of a flow's words.
#[inline(always)]
pub fn l4_slot(words: &[u32]) -> u32 {
    l4_flow_hash(words) % MAGLEV_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_word_is_the_header_bytes() {
        let w = l4_ports_word(40000, 5432);
        assert_eq!(w.to_ne_bytes(), [0x9c, 0x40, 0x15, 0x38]);
    }

    #[test]
    fn nearby_client_ports_spread_over_the_slots() {
        // One client's consecutive ports: 4 flows per slot on average.
        let n = 4 * MAGLEV_SIZE;
        let mut used = [0u8; MAGLEV_SIZE as usize];
        for port in 0..n {
            let words = l4_flow_words4([192, 0, 2, 1], l4_ports_word(port as u16, 9000), 6);
            let slot = l4_slot(&words) as usize;
            used[slot] = used[slot].saturating_add(1);
        }
        let empty = used.iter().filter(|c| **c == 0).count();
        let max = used.iter().max().copied().unwrap();
        // Poisson(4): ~1.8% empty, max around 14.
        assert!(empty < MAGLEV_SIZE as usize / 25, "{empty} slots unused");
        assert!(max <= 18, "{max} flows in one slot");
    }

    #[test]
    fn every_word_matters() {
        let base = l4_flow_words6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            7,
            17,
        );
        for i in 0..base.len() {
            let mut w = base;
            w[i] ^= 1;
            assert_ne!(l4_flow_hash(&w), l4_flow_hash(&base), "word {i}");
        }
    }
}
