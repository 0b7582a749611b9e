//! Resetting a client connection instead of closing it gracefully.
//!
//! A client that stopped reading (slow read) leaves the response in the
//! socket's send queue. A plain close keeps that queue, and the socket, in
//! FIN-WAIT-1 for as long as the client keeps the window shut (zero-window
//! probes are answered), so the attacker still holds the memory and sees
//! nothing. Closing with SO_LINGER 0 sends an RST and frees both at once,
//! like nginx's `reset_timedout_connection`.

use tokio::net::TcpStream;

/// A client connection that can be reset.
pub trait Abort {
    /// Makes the coming close an RST that drops unsent data.
    fn abort(&self);
}

impl Abort for TcpStream {
    fn abort(&self) {
        if let Err(e) = socket2::SockRef::from(self).set_linger(Some(std::time::Duration::ZERO)) {
            tracing::debug!("cannot reset the client connection: {e}");
        }
    }
}

impl<S: Abort + ?Sized> Abort for Box<S> {
    fn abort(&self) {
        (**self).abort();
    }
}

impl<S: Abort> Abort for tokio_rustls::server::TlsStream<S> {
    fn abort(&self) {
        self.get_ref().0.abort();
    }
}
