//! The one published routing snapshot, swapped atomically.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{
    limit::Limiter,
    metrics::RouteStats,
    model::{NamespacedName, RoutingTable, Translation, Warning},
    tls::TlsTable,
};

/// Everything the request path and the data plane read, immutable once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// 0 until the first snapshot from a source is live.
    pub generation: u64,
    pub table: RoutingTable,
    pub warnings: Vec<Warning>,
    /// The Ingresses these routes come from (ours), oldest first.
    pub ingresses: Vec<NamespacedName>,
    /// Request counters per host label of `table` (same indices), then
    /// per rule (`PathRule::stats` after them): `table.metric_labels()`.
    pub stats: Vec<Arc<RouteStats>>,
    /// Per-source limiters per entry of `table.limits()` (same indices).
    pub limiters: Vec<Arc<Limiter>>,
    /// Certificates by SNI.
    pub tls: TlsTable,
    /// The status of our Gateway API objects, for the leader to write.
    pub gateway: crate::model::GatewayReport,
    /// The client-address rules: the flags under the ConfigMap's keys
    /// (`None` before the first snapshot: the flags').
    pub client_address: Option<Arc<crate::model::client_address::ClientAddress>>,
}

/// `server-tokens` of the live configuration: the Server header names
/// the version too (off by default, as in ingress-nginx).
static SERVER_TOKENS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set when a snapshot is published.
fn set_server_tokens(on: bool) {
    SERVER_TOKENS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the Server header names the version (`server-tokens`).
pub fn server_tokens() -> bool {
    SERVER_TOKENS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The single publication point: readers `load()`, the source `publish()`es.
#[derive(Debug, Default)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
}

impl SnapshotCell {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The live snapshot; wait-free, no allocation.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Publishes a translation as the next generation and returns it.
    pub fn publish(
        &self,
        translation: Translation,
        stats: Vec<Arc<RouteStats>>,
        limiters: Vec<Arc<Limiter>>,
        tls: TlsTable,
        client_address: Arc<crate::model::client_address::ClientAddress>,
    ) -> Arc<Snapshot> {
        let generation = self.current.load().generation + 1;
        set_server_tokens(translation.table.server_tokens);
        let snap = Arc::new(Snapshot {
            generation,
            table: translation.table,
            warnings: translation.warnings,
            ingresses: translation.ingresses,
            gateway: translation.gateway,
            stats,
            limiters,
            tls,
            client_address: Some(client_address),
        });
        self.current.store(snap.clone());
        snap
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().generation > 0
    }
}

impl crate::tls::LiveTls for SnapshotCell {
    fn certificate(&self, sni: Option<&str>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.load().tls.lookup(sni).cloned()
    }

    fn tls_policy(&self) -> Option<Arc<crate::model::tls_policy::TlsPolicy>> {
        self.load().table.tls_policy.clone()
    }
}
