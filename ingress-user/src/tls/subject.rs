//! A certificate's subject as nginx's `$ssl_client_s_dn` shows it (RFC
//! 2253: the last RDN first, `TYPE=value` joined by commas), read with a
//! small bounds-checked DER walk; what `auth-tls-match-cn` is matched on.

/// One DER element: (tag, contents, what follows).
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// Short names of the attribute types certificates carry, by OID bytes.
const NAMES: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "emailAddress",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "DC",
    ),
    (
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        "UID",
    ),
];

/// Dotted decimal of an OID's contents.
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut out = format!("{}.{}", first / 40, first % 40);
    let mut n: u64 = 0;
    for &b in rest {
        n = n.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            out.push_str(&format!(".{n}"));
            n = 0;
        }
    }
    Some(out)
}

/// The contents of the SEQUENCE that is field `index` of a DER
/// certificate's TBSCertificate, counting from the serial (0) after the
/// optional version: 3 is the validity, 4 the subject.
fn tbs_sequence(der: &[u8], index: usize) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..index {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, field, _) = element(rest)? else {
        return None;
    };
    Some(field)
}

/// When a certificate (DER) expires: its `notAfter`, in Unix seconds.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let validity = tbs_sequence(der, 3)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    let digits = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSS, 1950-2049.
        0x17 => {
            let yy: i64 = digits.get(..2)?.parse().ok()?;
            (
                if yy < 50 { 2000 + yy } else { 1900 + yy },
                digits.get(2..)?,
            )
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        0x18 => (digits.get(..4)?.parse().ok()?, digits.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// The subject of a DER certificate, RFC 2253 style; `None` when the
/// certificate cannot be read that far.
pub fn subject_dn(der: &[u8]) -> Option<String> {
    let mut name = tbs_sequence(der, 4)?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (SET, mut set, next) = element(name)? else {
            return None;
        };
        name = next;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, atv, next) = element(set)? else {
                return None;
            };
            set = next;
            let (OID, oid, value) = element(atv)? else {
                return None;
            };
            let (tag, value, _) = element(value)?;
            let kind = NAMES
                .iter()
                .find(|(o, _)| *o == oid)
                .map(|(_, n)| n.to_string())
                .or_else(|| dotted(oid))?;
            let text = match tag {
                // BMPString: UTF-16BE.
                0x1e => {
                    let units: Vec<u16> = value
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => String::from_utf8_lossy(value).into_owned(),
            };
            parts.push(format!("{kind}={}", escape(&text)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 2253 §2.4 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let edge = (i == 0 && (c == '#' || c == ' ')) || (i + 1 == v.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn expiry_is_read_from_the_validity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 3, 14);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        // 2031-03-14T00:00:00Z
        assert_eq!(not_after(&der), Some(1_931_212_800));
        params.not_after = rcgen::date_time_ymd(2051, 1, 2);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(not_after(&der), Some(2_556_230_400));
        assert_eq!(not_after(b"\x30\x00"), None);
    }

    #[test]
    fn subjects_read_like_nginx_shows_them() {
        use rcgen::DnType::*;
        let der = cert(&[
            (CountryName, "US"),
            (OrganizationName, "Example, Inc."),
            (CommonName, "client-1"),
        ]);
        assert_eq!(
            subject_dn(&der).as_deref(),
            Some("CN=client-1,O=Example\\, Inc.,C=US")
        );
        let der = cert(&[
            (CommonName, "x"),
            (CustomDnType(vec![2, 5, 4, 12]), "Engineer"),
        ]);
        assert_eq!(subject_dn(&der).as_deref(), Some("2.5.4.12=Engineer,CN=x"));
    }

    #[test]
    fn broken_certificates_read_as_nothing() {
        let der = cert(&[(rcgen::DnType::CommonName, "client-1")]);
        for cut in 0..der.len() {
            // Cut short anywhere: never a panic, never a wrong subject.
            let got = subject_dn(&der[..cut]);
            assert!(
                got.is_none() || got.as_deref() == Some("CN=client-1"),
                "{cut}: {got:?}"
            );
        }
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] ^= 0xff;
            let _ = subject_dn(&m);
        }
        assert_eq!(subject_dn(b""), None);
    }
}
