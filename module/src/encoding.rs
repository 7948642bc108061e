//! The flat list of numbers that describes a window — shared by RDB, AOF rewrite, DEBUG DIGEST and
//! `LLMRL.LOAD` so they can never disagree on what the state is. Pure, so it can be fuzzed.
//!
//! Layout (RDB encoding version 1): `window_ms head rpm itpm otpm row_count` then three counters
//! (requests, input tokens, output tokens) per row, oldest row first.

use crate::window::{Snapshot, Window, WindowError, MAX_ROWS};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The source ran out (a truncated RDB): Redis reports the I/O error itself.
    #[error("truncated")]
    Truncated,
    #[error("more than {MAX_ROWS} buckets")]
    TooManyRows,
    #[error(transparent)]
    Invalid(#[from] WindowError),
}

pub fn encode(snapshot: &Snapshot) -> Vec<u64> {
    let mut out = Vec::with_capacity(6 + snapshot.rows.len() * 3);
    out.push(snapshot.window_ms);
    out.push(snapshot.head);
    out.extend_from_slice(&snapshot.limits);
    out.push(snapshot.rows.len() as u64);
    for row in &snapshot.rows {
        out.extend_from_slice(row);
    }
    out
}

/// Read a window from `next` (one number per call, `None` when the source is exhausted or
/// failed), validating everything: the input may be corrupt or hostile.
pub fn decode(mut next: impl FnMut() -> Option<u64>) -> Result<Window, DecodeError> {
    let mut next = || next().ok_or(DecodeError::Truncated);
    let window_ms = next()?;
    let head = next()?;
    let limits = [next()?, next()?, next()?];
    let count = next()?;
    if count > MAX_ROWS as u64 {
        return Err(DecodeError::TooManyRows);
    }
    let mut rows = Vec::with_capacity(count as usize);
    for _ in 0..count {
        rows.push([next()?, next()?, next()?]);
    }
    Ok(Window::from_snapshot(&Snapshot {
        window_ms,
        head,
        limits,
        rows,
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_short_or_oversized_input() {
        let snapshot = Snapshot {
            window_ms: 60_000,
            head: 1_000,
            limits: [10, 20, 30],
            rows: vec![[1, 2, 3], [0, 0, 0], [4, 5, 6]],
        };
        let numbers = encode(&snapshot);
        let mut source = numbers.iter().copied();
        let window = decode(|| source.next()).expect("valid");
        assert_eq!(window.snapshot(), snapshot);
        for cut in 0..numbers.len() {
            let mut source = numbers[..cut].iter().copied();
            assert_eq!(decode(|| source.next()).err(), Some(DecodeError::Truncated));
        }
        let mut huge = numbers.clone();
        huge[5] = 62;
        let mut source = huge.into_iter();
        assert_eq!(
            decode(|| source.next()).err(),
            Some(DecodeError::TooManyRows)
        );
    }
}
