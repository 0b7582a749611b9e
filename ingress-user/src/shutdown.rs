//! One shutdown signal that every task can wait on.

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

/// Fires once; clones share it. One pointer: every idle connection holds a
/// clone and waits on it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    fired: AtomicBool,
    notify: Notify,
}

/// The side that fires it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    shared: Arc<Shared>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let shared = Arc::new(Shared::default());
    (
        ShutdownTrigger {
            shared: shared.clone(),
        },
        Shutdown { shared },
    )
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.shared.fired.store(true, Ordering::Release);
        self.shared.notify.notify_waiters();
    }
}

impl Drop for ShutdownTrigger {
    /// A dropped trigger counts as fired, as for [`Shutdown::wait`].
    fn drop(&mut self) {
        self.fire();
    }
}

impl Shutdown {
    /// Resolves once the trigger fired (or was dropped). The future is
    /// small (a `Notified`): each idle connection keeps one.
    pub async fn wait(&self) {
        // A `Notified` sees every `notify_waiters` from its creation on;
        // the flag covers a firing before it.
        let notified = pin!(self.shared.notify.notified());
        if self.is_fired() {
            return;
        }
        notified.await;
    }

    /// Fires `to` once this shuts down: a part with a shutdown of its own
    /// (a port that can close alone) also stops with the agent.
    pub async fn pass_on(self, to: std::sync::Arc<ShutdownTrigger>) {
        self.wait().await;
        to.fire();
    }

    pub fn is_fired(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiters_before_and_after_firing_all_resolve() {
        let (trigger, shutdown) = channel();
        let early = tokio::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!shutdown.is_fired());
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), early)
            .await
            .expect("a waiter from before the firing wakes")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .expect("a wait after the firing returns at once");
        assert!(shutdown.is_fired());
    }

    #[tokio::test]
    async fn a_dropped_trigger_counts_as_fired() {
        let (trigger, shutdown) = channel();
        let waiter = tokio::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        tokio::task::yield_now().await;
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the drop wakes waiters")
            .unwrap();
        assert!(shutdown.is_fired());
    }
}
