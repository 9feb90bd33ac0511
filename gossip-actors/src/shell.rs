//! What every protocol actor shares: reading the clock, and the one re-armed timer.
//!
//! A sans-IO core says when it next wants to be woken (`poll_timeout`); its actor keeps one
//! timer at that instant, cancels and re-arms it after every input, and on expiry feeds the
//! core `handle_timeout` and drains its outputs. [`TimedShell`] writes that once.

use std::time::Instant;

use actix::prelude::*;

/// The current time as the cores take it. tokio's clock, so a paused runtime (the simulator,
/// tests) controls it.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// An actor around a sans-IO core that keeps one timer at the core's next deadline.
pub(crate) trait TimedShell: Actor<Context = Context<Self>> {
    /// Where the armed timer's handle is kept.
    fn timer_slot(&mut self) -> &mut Option<SpawnHandle>;

    /// The core's next deadline (`poll_timeout`).
    fn deadline(&self) -> Option<Instant>;

    /// The timer fired: feed the core `handle_timeout(now)` and drain its outputs (which
    /// re-arms the timer).
    fn on_timeout(&mut self, now: Instant, ctx: &mut Context<Self>);

    /// Cancels the armed timer and arms one at [`deadline`](Self::deadline), if any.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer_slot().take() {
            ctx.cancel_future(handle);
        }
        if let Some(deadline) = self.deadline() {
            let delay = deadline.saturating_duration_since(now());
            let handle = ctx.run_later(delay, |act, ctx| {
                *act.timer_slot() = None;
                act.on_timeout(now(), ctx);
            });
            *self.timer_slot() = Some(handle);
        }
    }
}

/// Implements [`TimedShell`] for an actor shaped like every protocol actor here: its core in
/// `self.core` (with `poll_timeout()` and `handle_timeout(now)`), its timer handle in
/// `self.timer`, and `self.drain(ctx)` to hand out the core's outputs (and re-arm).
macro_rules! timed_shell {
    ($actor:ty) => {
        impl $crate::shell::TimedShell for $actor {
            fn timer_slot(&mut self) -> &mut Option<actix::SpawnHandle> {
                &mut self.timer
            }

            fn deadline(&self) -> Option<std::time::Instant> {
                self.core.poll_timeout()
            }

            fn on_timeout(&mut self, now: std::time::Instant, ctx: &mut actix::Context<Self>) {
                self.core.handle_timeout(now);
                self.drain(ctx);
            }
        }
    };
}
pub(crate) use timed_shell;

/// The span of handling one inbound message: `peer{addr=…, node=…}` inside the node's span.
/// At debug level, so at the default info level it is disabled and costs nothing per
/// datagram.
pub(crate) fn peer_span(
    node: &tracing::Span,
    msg: &crate::messages::InboundMessage,
) -> tracing::Span {
    tracing::debug_span!(parent: node, "peer", addr = %msg.from, node = %msg.sender.short())
}
