//! The routing table put together: the ConfigMap's table-wide settings,
//! then each host's rules with their metric labels.

use super::*;

/// The table's settings that come from the controller ConfigMap (and the
/// flags under it), before any rule is placed.
pub(super) fn base_table(cx: &Cx, opts: &TranslateOptions) -> RoutingTable {
    RoutingTable {
        response_edit: cx.config.response_edit.clone(),
        request_edit: cx.config.request_edit.clone(),
        hsts: cx.config.hsts.over(opts.hsts).header(),
        block_user_agents: cx.config.block_user_agents.clone(),
        block_cidrs: cx.config.block_cidrs.clone().into(),
        limit_req_status: cx.config.limit_req_status,
        limit_conn_status: cx.config.limit_conn_status,
        access_log_off: cx.config.access_log_off,
        skip_access_log_urls: cx.config.skip_access_log_urls.clone(),
        otel: cx.config.otel.export().map(Arc::new),
        tls_policy: (!cx.config.tls.is_default()).then(|| Arc::new(cx.config.tls.clone())),
        server_tokens: cx.config.server_tokens,
        client_body_timeout: Some(cx.config.client_body_timeout),
        upstream_keepalive: cx.config.upstream_keepalive,
        client_keepalive: cx.config.client_keepalive,
        // The header edits of requests no rule routes: the ConfigMap's.
        edits: cx.edits(None),
        ..Default::default()
    }
}

/// Places each host's rules in the table (Gateway API deep wildcards apart),
/// giving every rule its metric labels, each distinct set once.
pub(super) fn place_hosts(
    table: &mut RoutingTable,
    hosts: BTreeMap<HostKey, Vec<PathRule>>,
    mut gateway_rules: BTreeMap<HostKey, Vec<PathRule>>,
) {
    table.labels.push(ANY_HOST_LABEL.into());
    table.hosts.reserve(
        hosts
            .keys()
            .filter(|k| matches!(k, HostKey::Exact(_)))
            .count(),
    );
    // Metric labels of the rules, each distinct one once.
    let mut interned: HashMap<RouteLabels, u32> = HashMap::new();
    let mut intern = |table: &mut RoutingTable, host: &str, rule: &mut PathRule| {
        let labels = RouteLabels {
            host: host.into(),
            namespace: rule.ingress.namespace.as_str().into(),
            ingress: rule.ingress.name.as_str().into(),
            service: rule.backend.service.name.as_str().into(),
            path: rule.path.clone(),
        };
        rule.stats = *interned.entry(labels).or_insert_with_key(|l| {
            table.route_labels.push(l.clone());
            (table.route_labels.len() - 1) as u32
        });
    };
    if let Some(mut rule) = table.default_rule.take() {
        intern(table, ANY_HOST_LABEL, &mut rule);
        table.default_rule = Some(rule);
    }
    for (key, mut rules) in hosts {
        let host_label = key.to_string();
        for r in &mut rules {
            intern(table, &host_label, r);
        }
        let label = match key {
            HostKey::Any => 0,
            _ => {
                table.labels.push(key.to_string().into());
                (table.labels.len() - 1) as u32
            }
        };
        // A Gateway API wildcard also matches names more than one label
        // deep: its rules alone, under the same label.
        if let HostKey::Wildcard(parent) = &key
            && let Some(mut deep) = gateway_rules.remove(&key)
        {
            for r in &mut deep {
                intern(table, &host_label, r);
            }
            table
                .deep_wildcards
                .insert(parent.clone(), HostRules::new(deep, label));
        }
        let rules = HostRules::new(rules, label);
        match key {
            HostKey::Exact(h) => {
                table.hosts.insert(h, rules);
            }
            HostKey::Wildcard(parent) => {
                table.wildcards.insert(parent, rules);
            }
            HostKey::Any => table.any_host = rules,
        }
    }
}
