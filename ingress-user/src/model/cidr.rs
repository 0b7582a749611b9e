//! CIDR ranges for allow and deny lists, in the 16-byte (IPv4-mapped) form
//! the XDP maps use.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

/// An address range; IPv4 ranges are stored IPv4-mapped, so `prefix` is
/// 96 + the IPv4 prefix length for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// Network address with the host bits cleared.
    pub addr: [u8; 16],
    /// 0..=128, in the 16-byte form.
    pub prefix: u8,
}

/// The 16-byte form of an address (IPv4-mapped for IPv4).
pub fn mapped(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let a = mapped(ip.to_canonical());
        let full = (self.prefix / 8) as usize;
        let rest = self.prefix % 8;
        if a[..full] != self.addr[..full] {
            return false;
        }
        rest == 0 || (a[full] ^ self.addr[full]) & (0xffu8 << (8 - rest)) == 0
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n`, `x::y/n`, or a plain address (a single host).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = match len {
            Some(l) => l
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
            None => max,
        };
        let prefix = if ip.is_ipv4() { 96 + len } else { len };
        let mut a = mapped(ip);
        for (i, byte) in a.iter_mut().enumerate() {
            let bit = (i * 8) as u8;
            if bit >= prefix {
                *byte = 0;
            } else if prefix - bit < 8 {
                *byte &= 0xffu8 << (8 - (prefix - bit));
            }
        }
        Ok(Cidr { addr: a, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = Ipv6Addr::from(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) if self.prefix >= 96 => write!(f, "{v4}/{}", self.prefix - 96),
            _ => write!(f, "{v6}/{}", self.prefix),
        }
    }
}

/// Parses a comma-separated annotation value; invalid entries are returned
/// apart (dropping them only narrows an allow list).
pub fn parse_list(value: &str) -> (Vec<Cidr>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<Cidr>() {
            Ok(c) => ok.push(c),
            Err(e) => bad.push(e),
        }
    }
    ok.sort();
    ok.dedup();
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert_eq!(c.prefix, 112);
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert_eq!(c.to_string(), "10.1.0.0/16");
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert!(host.contains("192.0.2.7".parse().unwrap()));
        assert!(!host.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/33".parse().unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        let odd: Cidr = "10.1.2.3/9".parse().unwrap();
        assert_eq!(odd.to_string(), "10.0.0.0/9");
        assert!(odd.contains("10.127.0.1".parse().unwrap()));
        assert!(!odd.contains("10.128.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(
            !all.contains("2001:db8::1".parse().unwrap()),
            "0.0.0.0/0 is IPv4 only"
        );
    }

    #[test]
    fn rejects_garbage_and_lists_apart() {
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let (ok, bad) = parse_list("10.0.0.0/8, 192.0.2.1 ,bogus,,10.0.0.0/8");
        assert_eq!(ok.len(), 2);
        assert_eq!(bad.len(), 1);
    }
}
