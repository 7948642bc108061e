//! The multi-scope check: one request against several scopes (an API key per minute and per
//! day, its team, its organisation's monthly spend, the upstream account's pool...), all or
//! nothing. Admitted only if every scope admits it, and then every scope is charged at the same
//! instant under one ticket; a refusal charges nothing anywhere.
//!
//! Pure: the module opens the keys, calls [`decide`] and applies the effects it yields
//! ([`MultiDecision::effects`]) and replicates them; [`plan_correction`] does the same for
//! settling or cancelling an admission.

pub mod args;

use crate::scope::{
    Clock, Lease, Limit, ScopeDecision, ScopeEffect, ScopeLimits, ScopeState, REPORTED, SUMMED,
};
use crate::window::{Amounts, Retry, WindowError};
use smallvec::SmallVec;
use thiserror::Error;

/// Bits of a ticket below the admission time: tickets are `time_ms << 16 | sequence`, unique
/// among the leases of the scopes they were issued in.
pub const TICKET_SEQUENCE_BITS: u32 = 16;

/// The most scopes one check may name.
pub const MAX_SCOPES: usize = 64;

/// Per-scope values of one call: on the stack for the usual few scopes (every call builds several
/// of these; allocating each was a measurable part of a pipelined MCHECK).
pub type PerScope<T> = SmallVec<[T; 6]>;

/// One scope of a request: how it measures time, its limits, what the request costs in it
/// (requests, input tokens, output tokens, cost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeRequest {
    pub clock: Clock,
    pub limits: ScopeLimits,
    pub cost: Amounts<SUMMED>,
}

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum MultiError {
    #[error("scope {index}: this key was created with another window or period")]
    ClockMismatch { index: usize },
    #[error("scope {index}: a concurrency limit needs LEASE ms")]
    LeaseRequired { index: usize },
    #[error("the ticket is in the future")]
    TicketInFuture,
    #[error(transparent)]
    Window(#[from] WindowError),
}

/// The decision over every scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiDecision {
    pub allowed: bool,
    /// The limit that refused (of the refusing scope with the longest wait); `None` if allowed.
    pub reason: Option<Limit>,
    /// That scope's index.
    pub scope: Option<usize>,
    /// When every scope would admit this same request with no other traffic.
    pub retry: Retry,
    /// Per [`Limit::ALL`]: the least left over all scopes (`None`: unlimited everywhere)...
    pub remaining: [Option<u64>; REPORTED],
    /// ...and that scope's reset.
    pub reset_ms: [u64; REPORTED],
    /// Each scope's own figures (with nothing charged when the request was refused).
    pub scopes: PerScope<ScopeDecision>,
    /// Identifies the admission for settling and releasing; 0 when refused.
    pub ticket: u64,
    /// The instant every scope is charged at.
    pub at_ms: u64,
    /// When a slot taken by this admission ends.
    pub lease_deadline_ms: u64,
}

/// The time of a ticket.
pub fn ticket_time(ticket: u64) -> u64 {
    ticket >> TICKET_SEQUENCE_BITS
}

/// The instant an operation on these scopes happens: the server's clock, unless a scope has
/// already counted later (the clock stepped back), so every scope is charged at one instant
/// that none of them sees as the past.
pub fn operation_time(now_ms: u64, states: &[Option<&ScopeState>]) -> u64 {
    states
        .iter()
        .flatten()
        .map(|state| state.floor_ms())
        .fold(now_ms, u64::max)
}

/// A ticket for an admission at `at_ms`, unique among the leases these scopes hold.
fn new_ticket(at_ms: u64, states: &[Option<&ScopeState>]) -> u64 {
    // Times past 2^48 ms (the year 10889; only a hostile MAPPLY carries one) share the last one.
    let at_ms = at_ms.min(u64::MAX >> TICKET_SEQUENCE_BITS);
    let base = at_ms << TICKET_SEQUENCE_BITS;
    let taken = states
        .iter()
        .flatten()
        .flat_map(|state| state.leases.items())
        .filter(|lease| ticket_time(lease.ticket) == at_ms)
        .map(|lease| lease.ticket & 0xFFFF)
        .max();
    match taken {
        None => base,
        Some(sequence) => base | (sequence + 1).min(0xFFFF),
    }
}

/// One scope's figures for `request`: the key's state, or a fresh one for a key that does not
/// exist yet (`report` alone: with nothing charged).
fn evaluate_scope(
    state: Option<&ScopeState>,
    request: &ScopeRequest,
    at_ms: u64,
    charged: bool,
) -> Result<ScopeDecision, MultiError> {
    let fresh;
    let state = match state {
        Some(state) => state,
        None => {
            fresh = ScopeState::new(request.clock)?;
            &fresh
        }
    };
    Ok(if charged {
        state.evaluate(at_ms, request.limits, request.cost)
    } else {
        state.report(at_ms, request.limits)
    })
}

/// Decide `requests` (one per scope, in order) against the scopes' current `states` (`None`:
/// a key that does not exist yet) at `now_ms` with leases of `lease_ms`.
pub fn decide(
    states: &[Option<&ScopeState>],
    requests: &[ScopeRequest],
    now_ms: u64,
    lease_ms: Option<u64>,
) -> Result<MultiDecision, MultiError> {
    let mut decision = MultiDecision::default();
    decide_into(states, requests, now_ms, lease_ms, &mut decision)?;
    Ok(decision)
}

/// [`decide`] into `out`: the module's path, where each scope's figures are written once where
/// they stay (returned, the decision's kilobyte would be copied on the way).
#[inline]
pub fn decide_into(
    states: &[Option<&ScopeState>],
    requests: &[ScopeRequest],
    now_ms: u64,
    lease_ms: Option<u64>,
    out: &mut MultiDecision,
) -> Result<(), MultiError> {
    let at_ms = operation_time(now_ms, states);
    let state_of = |index: usize| states.get(index).copied().flatten();
    out.scopes.clear();
    let mut retry = Retry::Now;
    let mut deciding = None;
    for (index, request) in requests.iter().enumerate() {
        let state = state_of(index);
        if state.is_some_and(|state| state.clock() != request.clock) {
            return Err(MultiError::ClockMismatch { index });
        }
        if request.limits.concurrency > 0 && lease_ms.is_none() {
            return Err(MultiError::LeaseRequired { index });
        }
        let scope = evaluate_scope(state, request, at_ms, true)?;
        if scope.retry.longer_than(retry) {
            retry = scope.retry;
            deciding = Some(index);
        }
        out.scopes.push(scope);
    }
    let allowed = retry == Retry::Now;
    if !allowed {
        // All or nothing: the scopes that would have admitted report themselves uncharged.
        for (index, (scope, request)) in out.scopes.iter_mut().zip(requests).enumerate() {
            if scope.allowed {
                *scope = evaluate_scope(state_of(index), request, at_ms, false)?;
            }
        }
    }
    // Waits are measured from the admission instant; the client counts from now.
    if let Retry::After(wait) = retry {
        retry = Retry::After(wait.saturating_add(at_ms.saturating_sub(now_ms)));
    }
    let mut remaining = [None; REPORTED];
    let mut reset_ms = [0; REPORTED];
    for d in 0..REPORTED {
        for scope in &out.scopes {
            let Some(left) = scope.remaining[d] else {
                continue;
            };
            // The least left; on a tie, the later reset (never promise capacity too early).
            let better = match remaining[d] {
                None => true,
                Some(best) => left < best || left == best && scope.reset_ms[d] > reset_ms[d],
            };
            if better {
                remaining[d] = Some(left);
                reset_ms[d] = scope.reset_ms[d];
            }
        }
    }
    out.allowed = allowed;
    out.reason = deciding
        .and_then(|i| out.scopes.get(i))
        .and_then(|d| d.reason);
    out.scope = deciding;
    out.retry = retry;
    out.remaining = remaining;
    out.reset_ms = reset_ms;
    out.ticket = if allowed {
        new_ticket(at_ms, states)
    } else {
        0
    };
    out.at_ms = at_ms;
    out.lease_deadline_ms = at_ms.saturating_add(lease_ms.unwrap_or(0));
    Ok(())
}

impl MultiDecision {
    /// What to apply to each scope of `requests` (the requests decided) when admitted; nothing
    /// when refused. Built on demand, so a decision stays small to move.
    pub fn effects<'a>(
        &'a self,
        requests: &'a [ScopeRequest],
    ) -> impl Iterator<Item = ScopeEffect> + 'a {
        let admitted = if self.allowed { requests } else { &[] };
        admitted.iter().map(move |request| ScopeEffect {
            now_ms: self.at_ms,
            limits: request.limits,
            charge: request.cost,
            refund: None,
            lease: (request.limits.concurrency > 0).then_some(Lease {
                ticket: self.ticket,
                deadline_ms: self.lease_deadline_ms,
            }),
            release: None,
        })
    }
}

/// Plan correcting the admission `ticket` in one scope: refund `reserved - actual` from what
/// it was charged (never below zero, and only while its bucket or period still counts), charge
/// `actual - reserved` now, and end its slot. Settling passes the request count as reserved and
/// actual alike; cancelling passes all it was charged as reserved and zeros as actual. `None`
/// when the key is gone (nothing to correct).
pub fn plan_correction(
    state: Option<&ScopeState>,
    now_ms: u64,
    ticket: u64,
    reserved: Amounts<SUMMED>,
    actual: Amounts<SUMMED>,
) -> Result<Option<ScopeEffect>, MultiError> {
    let Some(state) = state else {
        return Ok(None);
    };
    let at_ms = operation_time(now_ms, &[Some(state)]);
    let admitted_ms = ticket_time(ticket);
    if admitted_ms > at_ms {
        return Err(MultiError::TicketInFuture);
    }
    let mut refund = [0; SUMMED];
    let mut charge = [0; SUMMED];
    for d in 0..SUMMED {
        refund[d] = reserved[d].saturating_sub(actual[d]);
        charge[d] = actual[d].saturating_sub(reserved[d]);
    }
    let holds_slot = state.leases.holds(ticket);
    if refund == [0; SUMMED] && charge == [0; SUMMED] && !holds_slot {
        return Ok(None);
    }
    Ok(Some(ScopeEffect {
        now_ms: at_ms,
        limits: state.limits,
        charge,
        refund: (refund != [0; SUMMED]).then_some((admitted_ms, refund)),
        lease: None,
        release: holds_slot.then_some(ticket),
    }))
}

#[cfg(test)]
mod tests;
