//! One shutdown signal that every task can wait on.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::watch;

/// Fires once; clones share it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// The same fact, for a check per request without the channel's lock.
    fired: Arc<AtomicBool>,
}

/// The side that fires it.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
    fired: Arc<AtomicBool>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    let fired = Arc::new(AtomicBool::new(false));
    (
        ShutdownTrigger {
            tx,
            fired: fired.clone(),
        },
        Shutdown { rx, fired },
    )
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }
}

impl Drop for ShutdownTrigger {
    /// A dropped trigger counts as fired, as for [`Shutdown::wait`].
    fn drop(&mut self) {
        self.fired.store(true, Ordering::Release);
    }
}

impl Shutdown {
    /// Resolves once the trigger fired (or was dropped).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|fired| *fired).await;
    }

    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}
