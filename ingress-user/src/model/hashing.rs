//! `upstream-hash-by`: a request key (a template of ingress-nginx's
//! `$variables`) hashed onto a Service's endpoints by consistent hashing, so
//! the same key reaches the same pod, and an endpoint leaving moves only
//! the keys it had.
//!
//! The ring has `POINTS` points per endpoint, each at a hash of the
//! endpoint's address and the point's number: where an endpoint sits does
//! not depend on the others or on their order, so agents (and reloads)
//! agree, and removing an endpoint hands each of its arcs to the next
//! point only.

use std::net::{IpAddr, SocketAddr};

/// Points per endpoint: enough that shares stay within a few percent.
const POINTS: u32 = 160;

/// What a key is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    RequestUri,
    Uri,
    Args,
    RemoteAddr,
    Host,
    /// `$http_NAME` (lowercase, `-` for `_`).
    Header(Box<str>),
    /// `$cookie_NAME`.
    Cookie(Box<str>),
}

/// A parsed `upstream-hash-by`, with `upstream-hash-by-subset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashBy {
    pieces: Vec<Piece>,
    /// `upstream-hash-by-subset-size` when `upstream-hash-by-subset` is on:
    /// keys map to a group of this many endpoints, spread among them.
    pub subset: Option<usize>,
}

/// What of a request a key may use.
pub struct KeyInput<'a, 'h> {
    /// Path and query as sent.
    pub request_uri: &'a str,
    pub client: IpAddr,
    pub host: &'a str,
    pub header: &'a dyn Fn(&str) -> Option<&'h [u8]>,
    pub cookie: &'a dyn Fn(&str) -> Option<&'h [u8]>,
}

impl HashBy {
    /// `$request_uri`, `$uri`, `$args`, `$remote_addr`, `$host`,
    /// `$http_NAME`, `$cookie_NAME` and text; any other variable is an
    /// error naming it.
    pub fn parse(template: &str, subset: Option<usize>) -> Result<Self, String> {
        let mut pieces = Vec::new();
        for t in super::template::tokens(template)? {
            pieces.push(match t {
                super::template::Token::Text(text) => Piece::Text(text.into()),
                super::template::Token::Var(name) => match name {
                    "request_uri" => Piece::RequestUri,
                    "uri" => Piece::Uri,
                    "args" | "query_string" => Piece::Args,
                    "remote_addr" | "binary_remote_addr" => Piece::RemoteAddr,
                    "host" | "http_host" => Piece::Host,
                    n if n.starts_with("http_") && n.len() > 5 => {
                        Piece::Header(n[5..].replace('_', "-").to_ascii_lowercase().into())
                    }
                    n if n.starts_with("cookie_") && n.len() > 7 => Piece::Cookie(n[7..].into()),
                    n => return Err(format!("${n} is not a variable upstream-hash-by can use")),
                },
            });
        }
        if !pieces.iter().any(|p| !matches!(p, Piece::Text(_))) {
            return Err(format!(
                "{template:?} names no variable: every request would go to one pod"
            ));
        }
        Ok(Self { pieces, subset })
    }

    /// The request's key, hashed.
    pub fn key(&self, r: &KeyInput<'_, '_>) -> u64 {
        let mut h = Fnv::new();
        let (uri, args) = r.request_uri.split_once('?').unwrap_or((r.request_uri, ""));
        for p in &self.pieces {
            match p {
                Piece::Text(t) => h.write(t.as_bytes()),
                Piece::RequestUri => h.write(r.request_uri.as_bytes()),
                Piece::Uri => h.write(uri.as_bytes()),
                Piece::Args => h.write(args.as_bytes()),
                Piece::RemoteAddr => h.write(r.client.to_canonical().to_string().as_bytes()),
                Piece::Host => h.write(r.host.as_bytes()),
                Piece::Header(name) => h.write((r.header)(name).unwrap_or_default()),
                Piece::Cookie(name) => h.write((r.cookie)(name).unwrap_or_default()),
            }
            // Pieces apart: ("ab","c") and ("a","bc") differ.
            h.write(&[0xff]);
        }
        mix(h.0)
    }
}

/// FNV-1a, 64-bit.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// splitmix64's finaliser: FNV's low bits are weak, the ring needs all.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Consistent-hash ring over endpoints: (point, endpoint index), sorted.
#[derive(Debug)]
pub struct Ring {
    points: Vec<(u64, u32)>,
    owners: usize,
}

impl Ring {
    /// Over `owners` items named by `name(i)` (an address, a subset).
    pub fn new(owners: usize, name: impl Fn(usize) -> String) -> Self {
        let mut points = Vec::with_capacity(owners * POINTS as usize);
        for i in 0..owners {
            let base = name(i);
            for k in 0..POINTS {
                let mut h = Fnv::new();
                h.write(base.as_bytes());
                h.write(b"#");
                h.write(&k.to_le_bytes());
                points.push((mix(h.0), i as u32));
            }
        }
        points.sort_unstable();
        Self { points, owners }
    }

    /// Over endpoint addresses.
    pub fn of(endpoints: &[SocketAddr]) -> Self {
        Self::new(endpoints.len(), |i| endpoints[i].to_string())
    }

    /// The owners in the order the ring meets them from `key` on, each
    /// once: the first is the key's, the next ones where it goes when
    /// that one cannot take it.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(p, _)| *p < key);
        let n = self.points.len();
        let mut seen = vec![false; self.owners];
        let mut left = self.owners;
        (0..n).filter_map(move |k| {
            if left == 0 {
                return None;
            }
            let owner = self.points[(start + k) % n].1 as usize;
            if seen[owner] {
                return None;
            }
            seen[owner] = true;
            left -= 1;
            Some(owner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u8) -> Vec<SocketAddr> {
        (1..=n)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 8080)))
            .collect()
    }

    fn owner(ring: &Ring, eps: &[SocketAddr], key: u64) -> SocketAddr {
        eps[ring.walk(key).next().unwrap()]
    }

    /// An endpoint leaving moves exactly the keys it had; shares stay near
    /// even.
    #[test]
    fn an_endpoint_leaving_moves_only_its_own_keys() {
        let eps = addrs(10);
        let ring = Ring::of(&eps);
        let keys: Vec<u64> = (0..20_000u64).map(mix).collect();
        let before: Vec<SocketAddr> = keys.iter().map(|k| owner(&ring, &eps, *k)).collect();
        let mut shares = std::collections::HashMap::<SocketAddr, usize>::new();
        for o in &before {
            *shares.entry(*o).or_default() += 1;
        }
        for (a, n) in &shares {
            let share = *n as f64 / keys.len() as f64;
            assert!((0.07..=0.13).contains(&share), "{a}: {share}");
        }
        // The fourth leaves; the others keep their order in another list.
        let gone = eps[3];
        let mut rest: Vec<SocketAddr> = eps.iter().copied().filter(|a| *a != gone).collect();
        rest.reverse();
        let ring2 = Ring::of(&rest);
        let mut moved = 0;
        for (k, was) in keys.iter().zip(&before) {
            let now = owner(&ring2, &rest, *k);
            if *was == gone {
                moved += 1;
            } else {
                assert_eq!(now, *was, "a key of a staying endpoint moved");
            }
        }
        assert_eq!(moved, shares[&gone]);
        let (lo, hi) = shares
            .values()
            .fold((usize::MAX, 0), |(l, h), n| (l.min(*n), h.max(*n)));
        eprintln!(
            "10 endpoints, {} keys: shares {lo}..{hi} keys; one leaving moved {moved} ({:.1}%), none of the others'",
            keys.len(),
            100.0 * moved as f64 / keys.len() as f64
        );
    }

    #[test]
    fn keys_are_made_of_the_variables_and_bad_ones_are_refused() {
        let h = HashBy::parse("$request_uri", None).unwrap();
        let header = |_: &str| None;
        let cookie = |_: &str| None;
        let input = |uri: &'static str| KeyInput {
            request_uri: uri,
            client: "192.0.2.1".parse().unwrap(),
            host: "a.test",
            header: &header,
            cookie: &cookie,
        };
        assert_eq!(h.key(&input("/a?x=1")), h.key(&input("/a?x=1")));
        assert_ne!(h.key(&input("/a?x=1")), h.key(&input("/a?x=2")));
        let by_path = HashBy::parse("$uri", None).unwrap();
        assert_eq!(by_path.key(&input("/a?x=1")), by_path.key(&input("/a?x=2")));
        let user = |name: &str| (name == "x-user").then_some(&b"ann"[..]);
        let by_user = HashBy::parse("${http_x_user}", Some(3)).unwrap();
        let k = by_user.key(&KeyInput {
            header: &user,
            ..input("/1")
        });
        assert_eq!(
            k,
            by_user.key(&KeyInput {
                header: &user,
                ..input("/2")
            })
        );
        assert!(
            HashBy::parse("$geoip_city", None)
                .unwrap_err()
                .contains("$geoip_city")
        );
        assert!(HashBy::parse("static", None).is_err());
    }
}
