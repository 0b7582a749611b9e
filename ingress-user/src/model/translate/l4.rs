//! The `tcp-services` and `udp-services` ConfigMaps → the snapshot's L4
//! services. A bad entry is a warning naming its key; the others apply.

use super::*;
use crate::model::l4::{L4Protocol, L4Service, L4Table, parse_entry};

impl Cx<'_> {
    /// Both ConfigMaps' services, sorted by protocol and port, with the
    /// ConfigMap's `proxy-stream-*` settings.
    pub(super) fn l4_table(&mut self, opts: &TranslateOptions) -> L4Table {
        let mut services = Vec::new();
        for (protocol, id) in [
            (L4Protocol::Tcp, &opts.tcp_services),
            (L4Protocol::Udp, &opts.udp_services),
        ] {
            if let Some(id) = id {
                self.l4_services(protocol, id, &mut services);
            }
        }
        services.sort_by_key(|s: &Arc<L4Service>| (s.protocol, s.port));
        L4Table {
            services,
            stream: self.config.stream,
        }
    }

    fn l4_services(
        &mut self,
        protocol: L4Protocol,
        id: &NamespacedName,
        out: &mut Vec<Arc<L4Service>>,
    ) {
        let object = format!("ConfigMap {id}");
        let Some(cm) = self.objects.config_maps.get(id) else {
            self.warn_because(
                object,
                &format!(
                    "the {} services ConfigMap ({}) does not exist; no {} service is exposed",
                    protocol.label(),
                    protocol.flag(),
                    protocol.label()
                ),
                "MissingConfigMap",
            );
            return;
        };
        let data = cm.data.clone().unwrap_or_default();
        for (key, value) in &data {
            let entry = match parse_entry(key, value) {
                Ok(e) => e,
                Err(e) => {
                    self.warn_because(
                        object.clone(),
                        &format!("key {key}: {e}; skipped"),
                        "InvalidConfigMapKey",
                    );
                    continue;
                }
            };
            if protocol == L4Protocol::Udp && (entry.decode_proxy || entry.encode_proxy) {
                self.warnings.push(
                    Warning::note(
                        object.clone(),
                        format!("key {key}: PROXY applies to TCP only; ignored for UDP"),
                    )
                    .because("IgnoredConfigMapKey"),
                );
            }
            let who = format!("{object} key {key}");
            let Some(endpoints) =
                self.l4_endpoints(&entry.service, &entry.service_port, protocol, &who)
            else {
                continue;
            };
            let mut entry = entry;
            if protocol == L4Protocol::Udp {
                entry.decode_proxy = false;
                entry.encode_proxy = false;
            }
            if endpoints.is_empty() {
                self.warn_because(
                    who,
                    &format!(
                        "Service {} has no ready endpoint; connections to port {} are refused until it has",
                        entry.service, entry.port
                    ),
                    "NoEndpoints",
                );
            }
            out.push(Arc::new(L4Service::new(entry, protocol, endpoints)));
        }
    }

    /// The ready endpoints of a Service port of that protocol; `None` (and a
    /// warning) when the Service or the port does not exist.
    fn l4_endpoints(
        &mut self,
        service: &NamespacedName,
        port: &str,
        protocol: L4Protocol,
        who: &str,
    ) -> Option<Vec<SocketAddr>> {
        let Some(svc) = self.objects.services.get(service) else {
            self.warn_because(
                who.to_string(),
                &format!("Service {service} not found; port skipped"),
                "ServiceNotFound",
            );
            return None;
        };
        let spec = svc.spec.as_ref();
        if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            self.warn_because(
                who.to_string(),
                &format!("Service {service} is ExternalName: it has no endpoints to steer to; port skipped"),
                "ExternalNameDisabled",
            );
            return None;
        }
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let found = ports.iter().find(|p| {
            (p.port.to_string() == port || p.name.as_deref() == Some(port))
                && p.protocol.as_deref().unwrap_or("TCP") == protocol.label()
        });
        let Some(service_port) = found else {
            self.warn_because(
                who.to_string(),
                &format!(
                    "Service {service} has no {} port {port}; port skipped",
                    protocol.label()
                ),
                "ServicePortNotFound",
            );
            return None;
        };
        let port_name = service_port.name.as_deref().unwrap_or("");
        let eps = self
            .slice_endpoints(service, port_name)
            .or_else(|| self.legacy_endpoints(service, port_name));
        Some(eps.unwrap_or_default())
    }
}
