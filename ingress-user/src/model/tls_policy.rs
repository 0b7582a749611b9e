//! The controller ConfigMap's TLS policy: `ssl-protocols`, `ssl-ciphers`
//! and `ssl-session-tickets`, mapped onto what rustls offers. A protocol or
//! cipher rustls cannot offer (TLS 1.0/1.1, CBC and DHE suites, OpenSSL
//! keywords) is reported by name and left out; a value that leaves nothing
//! is refused and the default stays.

/// TLS 1.2 suites by OpenSSL name (as `ssl-ciphers` is written) and by
/// IANA name, and the TLS 1.3 suites by their IANA names (OpenSSL's too).
const SUITES: &[(&str, &str)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    ("TLS_AES_128_GCM_SHA256", "TLS13_AES_128_GCM_SHA256"),
    ("TLS_AES_256_GCM_SHA384", "TLS13_AES_256_GCM_SHA384"),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_CHACHA20_POLY1305_SHA256",
    ),
];

/// What the handshakes offer; the default is rustls' (TLS 1.2 and 1.3,
/// every AEAD suite, tickets on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    pub tls12: bool,
    pub tls13: bool,
    /// The rustls suite names (`TLS13_…`, `TLS_ECDHE_…`) offered; `None`:
    /// all.
    pub suites: Option<Vec<&'static str>>,
    /// `ssl-session-tickets`.
    pub tickets: bool,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            tls12: true,
            tls13: true,
            suites: None,
            tickets: true,
        }
    }
}

impl TlsPolicy {
    /// `ssl-protocols` (`TLSv1.2 TLSv1.3`). `Ok` carries a note naming
    /// the versions rustls cannot offer.
    pub fn set_protocols(&mut self, v: &str) -> Result<Option<String>, String> {
        let (mut tls12, mut tls13, mut unavailable) = (false, false, Vec::new());
        for p in v.split_whitespace() {
            match p {
                "TLSv1.2" => tls12 = true,
                "TLSv1.3" => tls13 = true,
                "TLSv1" | "TLSv1.1" | "SSLv2" | "SSLv3" => unavailable.push(p),
                other => {
                    return Err(format!(
                        "{other:?} is not a TLS protocol name (TLSv1.2, TLSv1.3); the default stays"
                    ));
                }
            }
        }
        if !tls12 && !tls13 {
            return Err(format!(
                "names no protocol rustls offers ({}); TLS 1.2 and 1.3 stay",
                if unavailable.is_empty() {
                    "none".into()
                } else {
                    unavailable.join(", ")
                }
            ));
        }
        self.tls12 = tls12;
        self.tls13 = tls13;
        Ok((!unavailable.is_empty()).then(|| {
            format!(
                "{} cannot be offered (rustls speaks TLS 1.2 and 1.3 only)",
                unavailable.join(", ")
            )
        }))
    }

    /// `ssl-ciphers` (an OpenSSL list, `:`-separated). The TLS 1.2 suites
    /// it names are offered; TLS 1.3 suites too if it names any (as with
    /// nginx, a list of TLS 1.2 names leaves TLS 1.3's suites alone). `Ok`
    /// carries a note naming what cannot be offered.
    pub fn set_ciphers(&mut self, v: &str) -> Result<Option<String>, String> {
        let mut named: Vec<&'static str> = Vec::new();
        let mut unavailable = Vec::new();
        for c in v
            .split([':', ',', ' '])
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            match SUITES
                .iter()
                .find(|(openssl, iana)| c == *openssl || c == *iana)
            {
                Some((_, iana)) if !named.contains(iana) => named.push(iana),
                Some(_) => {}
                None => unavailable.push(c),
            }
        }
        let tls12: Vec<&str> = named
            .iter()
            .copied()
            .filter(|n| !n.starts_with("TLS13_"))
            .collect();
        if tls12.is_empty() {
            return Err(format!(
                "names no TLS 1.2 suite rustls offers (it offers ECDHE with AES-GCM or ChaCha20-Poly1305); the default stays{}",
                if unavailable.is_empty() {
                    String::new()
                } else {
                    format!(" (not offered: {})", unavailable.join(", "))
                }
            ));
        }
        if !named.iter().any(|n| n.starts_with("TLS13_")) {
            named.extend(
                SUITES
                    .iter()
                    .map(|(_, iana)| *iana)
                    .filter(|n| n.starts_with("TLS13_")),
            );
        }
        self.suites = Some(named);
        Ok((!unavailable.is_empty()).then(|| {
            format!(
                "not offered by rustls, left out: {}",
                unavailable.join(", ")
            )
        }))
    }

    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_ciphers_map_onto_rustls() {
        let mut p = TlsPolicy::default();
        assert_eq!(p.set_protocols("TLSv1.2 TLSv1.3"), Ok(None));
        assert!(p.is_default());
        let note = p.set_protocols("TLSv1 TLSv1.1 TLSv1.3").unwrap().unwrap();
        assert!(note.contains("TLSv1, TLSv1.1"), "{note}");
        assert!(p.tls13 && !p.tls12);
        assert!(p.set_protocols("TLSv1.1").is_err());
        assert!(p.set_protocols("TLSv9").is_err());
        assert!(p.tls13 && !p.tls12, "a refused value changes nothing");

        // ingress-nginx's default list: its ECDHE-GCM/ChaCha suites map,
        // the DHE ones are named as left out; TLS 1.3's stay.
        let mut p = TlsPolicy::default();
        let note = p
            .set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256")
            .unwrap()
            .unwrap();
        assert!(note.contains("DHE-RSA-AES128-GCM-SHA256"), "{note}");
        let s = p.suites.clone().unwrap();
        assert!(s.contains(&"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"));
        assert!(!s.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"));
        assert!(s.contains(&"TLS13_AES_256_GCM_SHA384"));
        // Naming a TLS 1.3 suite narrows those too.
        p.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384:TLS_AES_128_GCM_SHA256")
            .unwrap();
        assert_eq!(
            p.suites.as_deref().unwrap(),
            [
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256"
            ]
        );
        assert!(p.set_ciphers("HIGH:!aNULL:!MD5").is_err());
    }
}
