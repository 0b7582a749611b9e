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

    pub fn is_fired(&self) -> bool {
        self.shared.fired.load(Ordering::Acquire)
    }
}

/// A task with a shutdown of its own that also stops with the agent's: a
/// port (a Gateway listener's, a TCP or UDP service's) that can close
/// alone when the configuration drops it.
pub struct StoppableTask {
    stop: ShutdownTrigger,
    /// Fires `stop` when the agent shuts down.
    forward: tokio::task::JoinHandle<()>,
    /// Taken by `stop`.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StoppableTask {
    /// Spawns `task` on `runtime` with its own shutdown, which `agent`'s
    /// also fires.
    pub fn spawn<F>(
        runtime: &tokio::runtime::Handle,
        agent: &Shutdown,
        task: impl FnOnce(Shutdown) -> F,
    ) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, own) = channel();
        let forward = {
            let (agent, shared) = (agent.clone(), stop.shared.clone());
            runtime.spawn(async move {
                agent.wait().await;
                ShutdownTrigger { shared }.fire();
            })
        };
        Self {
            stop,
            forward,
            task: Some(runtime.spawn(task(own))),
        }
    }

    /// Stops it (it drains as at shutdown, as it does when dropped); the
    /// handle says when it is done.
    pub fn stop(mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.take()
    }
}

impl Drop for StoppableTask {
    fn drop(&mut self) {
        self.stop.fire();
        self.forward.abort();
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
