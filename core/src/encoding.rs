//! The flat list of numbers that describes a window — shared by RDB, AOF rewrite, DEBUG DIGEST and
//! `LLMRL.LOAD` so they can never disagree on what the state is. Pure, so it can be fuzzed.
//!
//! Layout (RDB encoding version 1): `window_ms head rpm itpm otpm row_count` then three counters
//! (requests, input tokens, output tokens) per row, oldest row first.

use crate::stack_bytes::StackBytes;
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

/// The numbers of a replicated effect, in `LLMRL.APPLY`'s order: window_ms now_ms rpm itpm otpm
/// charge_requests charge_input charge_output refund_ticket refund_input refund_output.
pub const EFFECT_NUMBERS: usize = 11;

/// Version byte of the packed form of `LLMRL.APPLY`.
const PACKED_EFFECT_VERSION: u8 = 1;

/// The longest packed effect: the version byte and 11 LEB128 numbers of at most 10 bytes.
pub const MAX_PACKED_EFFECT: usize = 1 + EFFECT_NUMBERS * 10;

/// Pack an effect's numbers as one short binary argument (a version byte, then unsigned LEB128):
/// typically ~30 bytes, which Redis keeps in a single allocation, instead of 11 formatted integer
/// arguments — replication was a quarter of an admitted CHECK's cost.
pub fn pack_effect(numbers: &[u64; EFFECT_NUMBERS]) -> PackedEffect {
    let mut packed = PackedEffect::default();
    packed.push(&[PACKED_EFFECT_VERSION]);
    for &number in numbers {
        packed.push_leb128(number);
    }
    packed
}

/// A packed effect, on the stack.
pub type PackedEffect = StackBytes<MAX_PACKED_EFFECT>;

/// Emit `number` as unsigned LEB128, a byte at a time.
pub(crate) fn leb128(number: u64, mut emit: impl FnMut(u8)) {
    let mut rest = number;
    loop {
        let byte = (rest & 0x7f) as u8;
        rest >>= 7;
        emit(if rest == 0 { byte } else { byte | 0x80 });
        if rest == 0 {
            break;
        }
    }
}

/// Read one canonical unsigned LEB128 number off the front of `rest`.
fn read_leb128(rest: &mut &[u8]) -> Result<u64, PackedEffectError> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&byte, tail) = rest.split_first().ok_or(PackedEffectError::Malformed)?;
        *rest = tail;
        let bits = u64::from(byte & 0x7f);
        // The 10th byte may only carry the top bit of a u64; a trailing zero byte would be an
        // overlong (non-canonical) encoding.
        if shift == 63 && bits > 1 || (byte == 0 && shift > 0) {
            return Err(PackedEffectError::Malformed);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 63 {
            return Err(PackedEffectError::Malformed);
        }
    }
}

/// Pack any list of numbers the same way, behind its own version byte.
pub fn pack_numbers(version: u8, numbers: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + numbers.len() * 3);
    out.push(version);
    for &number in numbers {
        leb128(number, |byte| out.push(byte));
    }
    out
}

/// Unpack exactly `count` numbers packed by [`pack_numbers`] with `version`.
pub fn unpack_numbers(
    version: u8,
    bytes: &[u8],
    count: usize,
) -> Result<Vec<u64>, PackedEffectError> {
    let (&found, mut rest) = bytes.split_first().ok_or(PackedEffectError::Malformed)?;
    if found != version {
        return Err(PackedEffectError::Version);
    }
    let mut numbers = Vec::with_capacity(count);
    for _ in 0..count {
        numbers.push(read_leb128(&mut rest)?);
    }
    if !rest.is_empty() {
        return Err(PackedEffectError::Malformed);
    }
    Ok(numbers)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PackedEffectError {
    #[error("unknown packed effect version")]
    Version,
    #[error("malformed packed effect")]
    Malformed,
}

/// Unpack what [`pack_effect`] wrote; anything else (trailing bytes, overlong or overflowing
/// numbers, another version) is refused.
pub fn unpack_effect(bytes: &[u8]) -> Result<[u64; EFFECT_NUMBERS], PackedEffectError> {
    let numbers = unpack_numbers(PACKED_EFFECT_VERSION, bytes, EFFECT_NUMBERS)?;
    let mut out = [0u64; EFFECT_NUMBERS];
    for (slot, number) in out.iter_mut().zip(numbers) {
        *slot = number;
    }
    Ok(out)
}

#[cfg(test)]
mod packed_tests {
    use super::*;

    #[test]
    fn packed_effects_round_trip_and_refuse_garbage() {
        let samples = [
            [0u64; EFFECT_NUMBERS],
            [u64::MAX; EFFECT_NUMBERS],
            [
                60_000,
                1_795_345_536_123,
                100,
                100_000,
                20_000,
                1,
                120,
                80,
                0,
                0,
                0,
            ],
            [
                60,
                127,
                128,
                16_383,
                16_384,
                1 << 63,
                (1 << 63) - 1,
                2,
                3,
                4,
                5,
            ],
        ];
        for numbers in samples {
            let packed = pack_effect(&numbers);
            let (bytes, len) = (packed.as_slice(), packed.as_slice().len());
            assert_eq!(unpack_effect(&bytes[..len]), Ok(numbers));
            // Cut short, or with a trailing byte: refused.
            assert!(unpack_effect(&bytes[..len - 1]).is_err());
            let mut longer = bytes[..len].to_vec();
            longer.push(0);
            assert!(unpack_effect(&longer).is_err());
        }
        let typical = pack_effect(&samples[2]);
        assert!(typical.as_slice().len() <= 30, "{:?}", typical.as_slice());
        assert_eq!(typical.as_slice().first(), Some(&1));
        assert_eq!(unpack_effect(&[]), Err(PackedEffectError::Malformed));
        assert_eq!(unpack_effect(&[2, 0]), Err(PackedEffectError::Version));
        // An 11-byte number, and a 10th byte above 1, overflow u64.
        let mut overlong = vec![1u8];
        overlong.extend([0xff; 10]);
        overlong.push(0x01);
        assert_eq!(unpack_effect(&overlong), Err(PackedEffectError::Malformed));
        let mut too_big = vec![1u8];
        too_big.extend([0xff; 9]);
        too_big.push(0x02);
        assert_eq!(unpack_effect(&too_big), Err(PackedEffectError::Malformed));
        // Overlong zero padding (0x80 0x00 for 0) is not canonical.
        assert_eq!(
            unpack_effect(&[1, 0x80, 0x00]),
            Err(PackedEffectError::Malformed)
        );
    }
}
