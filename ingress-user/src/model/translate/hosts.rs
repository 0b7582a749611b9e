//! The host-level rules of Ingresses: redirects to HTTPS
//! (`ssl-redirect`, `force-ssl-redirect`), `server-alias` names, and
//! `from-to-www-redirect`.

use std::collections::HashSet;

use super::*;

/// Each host's Ingress rules by path and kind, oldest Ingress first.
pub(super) type IngressHosts = BTreeMap<HostKey, BTreeMap<(Box<str>, PathKind), PathRule>>;

/// Plain HTTP to a host with TLS is redirected, unless the rule's Ingress
/// opts out; `force-ssl-redirect` redirects with or without TLS. Returns
/// the Ingresses that force it (their default backend rule too).
pub(super) fn https_redirects<'a>(
    cx: &Cx,
    ours: &[(&'a NamespacedName, &'a Ingress)],
    hosts: &mut IngressHosts,
    tls_hosts: &HashSet<String>,
) -> HashSet<&'a NamespacedName> {
    let flagged = |name: &str, value: &str| -> std::collections::HashSet<&NamespacedName> {
        ours.iter()
            .filter(|(_, ing)| annotations::is(ing, name, value))
            .map(|&(id, _)| id)
            .collect()
    };
    // The ConfigMap's `ssl-redirect` / `force-ssl-redirect` for Ingresses
    // that do not say.
    let no_redirect: std::collections::HashSet<&NamespacedName> = if cx.config.ssl_redirect {
        flagged("ssl-redirect", "false")
    } else {
        let yes = flagged("ssl-redirect", "true");
        ours.iter()
            .map(|&(id, _)| id)
            .filter(|id| !yes.contains(id))
            .collect()
    };
    let forced: std::collections::HashSet<&NamespacedName> = if cx.config.force_ssl_redirect {
        let no = flagged("force-ssl-redirect", "false");
        ours.iter()
            .map(|&(id, _)| id)
            .filter(|id| !no.contains(id))
            .collect()
    } else {
        flagged("force-ssl-redirect", "true")
    };
    for (key, rules) in hosts.iter_mut() {
        let has_tls = match key {
            HostKey::Any => false,
            HostKey::Exact(h) => tls_hosts.contains(&**h),
            k => tls_hosts.contains(&k.to_string()),
        };
        for rule in rules.values_mut() {
            rule.redirect_https = (has_tls && !no_redirect.contains(&*rule.ingress))
                || forced.contains(&*rule.ingress);
        }
    }
    forced
}

/// `server-alias`: more names for a host's rules (all of them, as
/// nginx's server_name), never taking a name that has rules of its own.
pub(super) fn server_aliases(
    cx: &mut Cx,
    mains: &[(&NamespacedName, &Ingress)],
    hosts: &mut IngressHosts,
) {
    for &(id, ing) in mains {
        let Some(aliases) = annotations::get(ing, "server-alias") else {
            continue;
        };
        let own: Vec<HostKey> = ing
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .filter_map(|r| parse_host(r.host.as_deref()).ok())
            .filter(|h| matches!(h, HostKey::Exact(_)))
            .collect();
        for alias in aliases.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let key = match parse_host(Some(alias)) {
                Ok(k @ HostKey::Exact(_)) => k,
                _ => {
                    cx.warn_ingress(
                        id,
                        &format!("server-alias {alias:?} is not a host name; ignored"),
                    );
                    continue;
                }
            };
            if hosts.contains_key(&key) {
                cx.warn_ingress(
                    id,
                    &format!("server-alias {alias} is a host with rules of its own; ignored"),
                );
                continue;
            }
            let Some(rules) = own.first().and_then(|h| hosts.get(h)).cloned() else {
                continue;
            };
            hosts.insert(key, rules);
        }
    }
}

/// `from-to-www-redirect`: www.HOST to HOST (or HOST to www.HOST) with
/// 308, unless that name has rules of its own.
pub(super) fn www_redirects(mains: &[(&NamespacedName, &Ingress)], hosts: &mut IngressHosts) {
    for &(_, ing) in mains {
        if !annotations::is(ing, "from-to-www-redirect", "true") {
            continue;
        }
        let own: Vec<String> = ing
            .spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .filter_map(|r| match parse_host(r.host.as_deref()) {
                Ok(HostKey::Exact(h)) => Some(h.to_string()),
                _ => None,
            })
            .collect();
        for host in own {
            let other = match host.strip_prefix("www.") {
                Some(bare) => bare.to_string(),
                None => format!("www.{host}"),
            };
            let key = HostKey::Exact(other.as_str().into());
            if hosts.contains_key(&key) {
                continue;
            }
            let Some(mut rule) = hosts
                .get(&HostKey::Exact(host.as_str().into()))
                .and_then(|rules| rules.values().next().cloned())
            else {
                continue;
            };
            rule.path = "/".into();
            rule.kind = PathKind::Prefix;
            rule.regex = None;
            rule.settings = Arc::new(RouteSettings {
                redirect: Some(Arc::new(Redirect {
                    code: 308,
                    location: host.as_str().into(),
                    to_host: true,
                })),
                ..(*rule.settings).clone()
            });
            hosts.insert(
                key,
                BTreeMap::from([((rule.path.clone(), PathKind::Prefix), rule)]),
            );
        }
    }
}
