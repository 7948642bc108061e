//! Concurrency slots: one lease per admission in flight, held until it is released or its
//! deadline passes. A crashed client never holds a slot past its lease; releasing twice is a
//! no-op; memory is bounded by the concurrency limit (an admission is refused once the live
//! leases reach it).

use crate::window::Retry;

/// A slot held by the admission `ticket` until `deadline_ms` (absolute, server clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    pub ticket: u64,
    pub deadline_ms: u64,
}

/// The leases of a scope, ordered by deadline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leases {
    items: Vec<Lease>,
}

/// What the slots say about one more admission.
pub struct SlotDecision {
    pub retry: Retry,
    /// Free slots now (`None`: unlimited).
    pub free: Option<u64>,
    /// Ms until the earliest live lease ends (0 when none is live).
    pub reset_ms: u64,
}

impl Leases {
    pub fn from_items(mut items: Vec<Lease>) -> Leases {
        items.sort_by_key(|lease| (lease.deadline_ms, lease.ticket));
        Leases { items }
    }

    pub fn items(&self) -> &[Lease] {
        &self.items
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<Lease>()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Leases still held at `now_ms`, earliest deadline first.
    fn live(&self, now_ms: u64) -> &[Lease] {
        let ended = self.items.partition_point(|l| l.deadline_ms <= now_ms);
        self.items.get(ended..).unwrap_or(&[])
    }

    /// Whether one more slot can be taken at `now_ms` under `limit` (0: unlimited), and if not
    /// when: the moment enough leases have ended with no other traffic.
    pub fn evaluate(&self, now_ms: u64, limit: u64) -> SlotDecision {
        let live = self.live(now_ms);
        let reset_ms = live
            .first()
            .map_or(0, |l| l.deadline_ms.saturating_sub(now_ms));
        if limit == 0 {
            return SlotDecision {
                retry: Retry::Now,
                free: None,
                reset_ms,
            };
        }
        let held = live.len() as u64;
        let retry = if held < limit {
            Retry::Now
        } else {
            // `held - limit + 1` leases must end: the (held - limit)-th earliest deadline.
            let index = usize::try_from(held - limit).unwrap_or(usize::MAX);
            let deadline = live.get(index).map_or(now_ms, |l| l.deadline_ms);
            Retry::After(deadline.saturating_sub(now_ms).max(1))
        };
        SlotDecision {
            retry,
            free: Some(limit.saturating_sub(held)),
            reset_ms,
        }
    }

    /// Forget the leases that ended by `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let ended = self.items.partition_point(|l| l.deadline_ms <= now_ms);
        self.items.drain(..ended);
    }

    /// End the lease of `ticket`, if there is one.
    pub fn release(&mut self, ticket: u64) {
        self.items.retain(|l| l.ticket != ticket);
    }

    /// Hold a new lease (a ticket already holding one keeps the later deadline).
    pub fn take(&mut self, lease: Lease) {
        let deadline_ms = match self.items.iter().position(|l| l.ticket == lease.ticket) {
            Some(held) => self.items.remove(held).deadline_ms.max(lease.deadline_ms),
            None => lease.deadline_ms,
        };
        let lease = Lease {
            ticket: lease.ticket,
            deadline_ms,
        };
        let at = self
            .items
            .partition_point(|l| (l.deadline_ms, l.ticket) <= (lease.deadline_ms, lease.ticket));
        self.items.insert(at, lease);
    }

    pub fn last_deadline(&self) -> Option<u64> {
        self.items.last().map(|l| l.deadline_ms)
    }

    /// Whether `ticket` holds a lease.
    pub fn holds(&self, ticket: u64) -> bool {
        self.items.iter().any(|l| l.ticket == ticket)
    }
}
