//! One retry policy for both transports (ingress-nginx's
//! `proxy-next-upstream`): which failures send a request on to another
//! endpoint, how many endpoints and for how long, and which endpoint next
//! (one this request has not tried, and not ejected by passive health,
//! whatever the backend's shared round-robin counter says).

use std::{net::SocketAddr, time::Instant};

use super::health::Health;
use crate::model::{
    Backend,
    annotations::{NEXT_NON_IDEMPOTENT, UpstreamPolicy},
};

/// The endpoints one request has tried, and whether it may try another.
pub(super) struct Attempts<'a> {
    backend: &'a Backend,
    policy: &'a UpstreamPolicy,
    first: SocketAddr,
    /// Allocated only when the request is retried.
    more: Vec<SocketAddr>,
    started: Instant,
    /// The request can be sent again once sent: it has no body and is
    /// idempotent (or the route says `non_idempotent`).
    resendable: bool,
}

impl<'a> Attempts<'a> {
    pub fn new(
        backend: &'a Backend,
        policy: &'a UpstreamPolicy,
        first: SocketAddr,
        bodiless: bool,
        idempotent: bool,
    ) -> Self {
        Self {
            backend,
            policy,
            first,
            more: Vec::new(),
            started: Instant::now(),
            resendable: bodiless && (idempotent || policy.retries_on(NEXT_NON_IDEMPOTENT)),
        }
    }

    fn tried(&self, a: SocketAddr) -> bool {
        a == self.first || self.more.contains(&a)
    }

    /// After a failure of `case` (`NEXT_ERROR`, `NEXT_TIMEOUT`, ...): the
    /// endpoint to try next, if the policy allows one. `sent`: the request
    /// (or part of it) reached the pod; a failed connect sent nothing, so
    /// any request may go on.
    pub fn next(&mut self, case: u16, sent: bool, health: &Health) -> Option<SocketAddr> {
        if !self.policy.retries_on(case) || (sent && !self.resendable) {
            return None;
        }
        let tries = self.more.len() + 1;
        if self.policy.tries != 0 && tries >= self.policy.tries as usize {
            return None;
        }
        if self
            .policy
            .next_timeout
            .is_some_and(|t| self.started.elapsed() >= t)
        {
            return None;
        }
        let next = self
            .backend
            .pick_untried(&|a| self.tried(a), &|a| health.is_ejected(a))?;
        self.more.push(next);
        Some(next)
    }

    /// A response with this status goes on to another endpoint (the
    /// request was sent, so only a resendable one). Whether it counts as a
    /// failure of the endpoint is [`UpstreamPolicy::on_status`]'s second
    /// answer.
    pub fn next_on_status(&mut self, status: u16, health: &Health) -> Option<SocketAddr> {
        let case = UpstreamPolicy::status_case(status)?;
        self.next(case, true, health)
    }
}

/// Idempotent methods (RFC 9110 §9.2.2), from the method's bytes: the
/// same rule as hyper's path (`http::Method::is_idempotent`).
pub(super) fn idempotent(method: &[u8]) -> bool {
    http::Method::from_bytes(method).is_ok_and(|m| m.is_idempotent())
}
