//! The replies with `BINARY`: one string of little-endian signed 64-bit words. MCHECK / MPEEK
//! (`DETAIL BINARY` or `BINARY`): the fifteen fields of [`MULTI_FIELD_NAMES`] then each scope's
//! thirteen figures, in the order of the packed form. CHECK / PEEK / SETTLE: the ten fields of
//! [`VERDICT_FIELD_NAMES`]. The reason is a code ([`reason_code`]).
//!
//! The packed text form costs its reader about 140 instructions a number (a five-scope reply has
//! 68 of them) and its writer the formatting; a word is a load and a store. The text form stays
//! for clients that read the reply themselves (`redis-cli`); a gateway asks for words.

use super::multi::{MultiVerdict, ScopeVerdict, MULTI_FIELDS, MULTI_FIELD_NAMES, PACKED_FIGURES};
use super::{Reason, ReplyError, Verdict, VERDICT_FIELDS, VERDICT_FIELD_NAMES};
use crate::scope::{Limit, REPORTED};

/// Bytes a word takes.
pub const WORD: usize = 8;

/// The length of a binary reply with `scopes` scopes.
pub const fn binary_len(scopes: usize) -> usize {
    (MULTI_FIELDS + scopes * PACKED_FIGURES) * WORD
}

/// The length of a CHECK / PEEK / SETTLE reply with `BINARY`: its ten fields as words.
pub const VERDICT_BINARY_LEN: usize = VERDICT_FIELDS * WORD;

/// A reason's code in a binary reply: 0 for `ok`, then 1 to 5 in the order of [`Limit::ALL`]
/// (`rpm`, `itpm`, `otpm`, `cost`, `concurrency`).
pub fn reason_code(reason: Option<Limit>) -> i64 {
    match reason {
        None => 0,
        Some(limit) => Limit::ALL
            .iter()
            .position(|l| *l == limit)
            .map_or(0, |i| i as i64 + 1),
    }
}

/// The reason a code stands for; `None` for a code that is none.
pub fn reason_of_code(code: i64) -> Option<Option<Limit>> {
    match code {
        0 => Some(None),
        _ => code
            .checked_sub(1)
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|i| Limit::ALL.get(i).copied())
            .map(Some),
    }
}

/// The first two words of a verdict and of each scope: `allowed` and the reason's code.
fn lead_words(allowed: bool, reason: Option<Limit>) -> [i64; 2] {
    [i64::from(allowed), reason_code(reason)]
}

/// Appends words to a buffer the caller keeps (the module reuses one across calls).
pub struct BinaryWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> BinaryWriter<'a> {
    /// Clears `out` and reserves room for a reply with `scopes` scopes.
    pub fn new(out: &'a mut Vec<u8>, scopes: usize) -> BinaryWriter<'a> {
        out.clear();
        out.reserve(binary_len(scopes));
        BinaryWriter { out }
    }

    /// `allowed`, the reason's code, then `numbers`.
    fn words(&mut self, allowed: bool, reason: Option<Limit>, numbers: &[i64]) {
        for word in lead_words(allowed, reason).iter().chain(numbers) {
            self.out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// The fifteen head fields of `verdict` (its scopes are left to [`BinaryWriter::scope`]).
    pub fn head(&mut self, verdict: &MultiVerdict) {
        self.words(verdict.allowed, verdict.reason, &verdict.head_numbers());
    }

    /// One scope's thirteen figures, after the head or the scope before it.
    pub fn scope(&mut self, scope: &ScopeVerdict) {
        self.words(scope.allowed, scope.reason, &scope.numbers());
    }
}

impl MultiVerdict {
    /// The reply with `DETAIL BINARY`: the head's words, then each scope's.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = BinaryWriter::new(&mut out, self.scopes.len());
        writer.head(self);
        for scope in &self.scopes {
            writer.scope(scope);
        }
        out
    }

    /// The reply [`MultiVerdict::to_binary`] wrote; anything else is an error.
    pub fn from_binary(bytes: &[u8]) -> Result<MultiVerdict, ReplyError> {
        let (head, scopes) = bytes
            .split_at_checked(MULTI_FIELDS * WORD)
            .filter(|(_, scopes)| scopes.len().is_multiple_of(PACKED_FIGURES * WORD))
            .ok_or(ReplyError::FieldCount(bytes.len() / WORD))?;
        let name = |index: usize| MULTI_FIELD_NAMES.get(index).copied().unwrap_or("scopes");
        let (allowed, reason, numbers) = lead(head, name)?;
        let scopes = scopes
            .chunks_exact(PACKED_FIGURES * WORD)
            .map(ScopeVerdict::from_binary)
            .collect::<Result<_, _>>()?;
        MultiVerdict::from_head(allowed, reason, numbers, scopes)
    }
}

impl ScopeVerdict {
    /// One scope's thirteen words of a binary reply.
    fn from_binary(bytes: &[u8]) -> Result<ScopeVerdict, ReplyError> {
        let (allowed, reason, numbers) = lead(bytes, |_| "scopes")?;
        Ok(ScopeVerdict::from_numbers(allowed, reason, numbers))
    }
}

/// `allowed` and the reason from the first two words of `bytes`, and the `N` words after them.
fn lead<const N: usize>(
    bytes: &[u8],
    name: impl Fn(usize) -> &'static str,
) -> Result<(bool, Option<Limit>, [i64; N]), ReplyError> {
    let [allowed, reason]: [i64; 2] = words(bytes);
    let numbers = words(bytes.get(2 * WORD..).unwrap_or_default());
    let allowed = match allowed {
        0 => false,
        1 => true,
        _ => {
            return Err(ReplyError::Field {
                index: 0,
                name: name(0),
                expected: "0 or 1",
            })
        }
    };
    let reason = reason_of_code(reason).ok_or(ReplyError::Field {
        index: 1,
        name: name(1),
        expected: "a reason code (0 to 5)",
    })?;
    Ok((allowed, reason, numbers))
}

/// The first `N` words of `bytes` (zeros past its end: callers check the length first).
fn words<const N: usize>(bytes: &[u8]) -> [i64; N] {
    let mut out = [0i64; N];
    for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(WORD)) {
        let mut word = [0u8; WORD];
        word.copy_from_slice(chunk);
        *slot = i64::from_le_bytes(word);
    }
    out
}

impl Verdict {
    /// The reply of CHECK / PEEK / SETTLE with `BINARY`: the ten fields, in order, as words.
    pub fn to_binary(&self) -> [u8; VERDICT_BINARY_LEN] {
        let lead = lead_words(self.allowed, self.reason.dimension().map(Limit::Summed));
        let mut out = [0u8; VERDICT_BINARY_LEN];
        for (chunk, word) in out
            .chunks_exact_mut(WORD)
            .zip(lead.into_iter().chain(self.numbers()))
        {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// The reply [`Verdict::to_binary`] wrote; anything else is an error.
    pub fn from_binary(bytes: &[u8]) -> Result<Verdict, ReplyError> {
        if bytes.len() != VERDICT_BINARY_LEN {
            return Err(ReplyError::FieldCount(bytes.len() / WORD));
        }
        let name = |index: usize| VERDICT_FIELD_NAMES.get(index).copied().unwrap_or("verdict");
        let (allowed, reason, numbers) = lead(bytes, name)?;
        let reason = match reason {
            None => Reason::Ok,
            Some(Limit::Summed(dimension))
                if crate::window::Dimension::ALL.contains(&dimension) =>
            {
                Reason::Denied(dimension)
            }
            Some(_) => {
                return Err(ReplyError::Field {
                    index: 1,
                    name: name(1),
                    expected: "a reason code (0 to 3)",
                })
            }
        };
        Ok(Verdict::from_numbers(allowed, reason, numbers))
    }
}

/// Whether a reply string is the binary form rather than the packed text: the text starts
/// `0,` or `1,`; the first word of the binary form is 0 or 1, so its second byte is 0.
pub fn is_binary(reply: &[u8]) -> bool {
    reply.get(1) == Some(&0)
}

const _: () =
    assert!(REPORTED == 5 && PACKED_FIGURES == 13 && MULTI_FIELDS == 15 && VERDICT_FIELDS == 10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::multi::tests::multi_verdict_strategy as verdict_strategy;
    use crate::protocol::Field;
    use crate::window::Dimension;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the figures, the binary reply reads back as written, and as the packed text
        /// form of the same verdict reads.
        #[test]
        fn binary_round_trips_and_agrees_with_the_packed_form(verdict in verdict_strategy()) {
            let binary = verdict.to_binary();
            prop_assert_eq!(binary.len(), binary_len(verdict.scopes.len()));
            prop_assert!(is_binary(&binary));
            prop_assert!(!is_binary(&verdict.pack()));
            prop_assert_eq!(MultiVerdict::from_binary(&binary), Ok(verdict.clone()));
            prop_assert_eq!(MultiVerdict::unpack(&verdict.pack()), Ok(verdict));
        }

        /// Any string at all is read without a panic, and one of the wrong length is an error.
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let read = MultiVerdict::from_binary(&bytes);
            let shaped = bytes.len() >= binary_len(0)
                && (bytes.len() - binary_len(0)).is_multiple_of(PACKED_FIGURES * WORD);
            if !shaped {
                prop_assert!(read.is_err());
            }
        }
    }

    fn single_verdict_strategy() -> impl Strategy<Value = Verdict> {
        let reason = prop_oneof![
            Just(Reason::Ok),
            prop::sample::select(Dimension::ALL.to_vec()).prop_map(Reason::Denied),
        ];
        (
            any::<bool>(),
            reason,
            any::<i64>(),
            any::<[i64; 3]>(),
            any::<[i64; 3]>(),
            any::<i64>(),
        )
            .prop_map(
                |(allowed, reason, retry_after_ms, remaining, reset_ms, ticket)| Verdict {
                    allowed,
                    reason,
                    retry_after_ms,
                    remaining,
                    reset_ms,
                    ticket,
                },
            )
    }

    proptest! {
        /// A CHECK reply's words read back as written, and as the array of the same fields reads.
        #[test]
        fn a_single_verdict_round_trips_and_agrees_with_the_array(verdict in single_verdict_strategy()) {
            let binary = verdict.to_binary();
            prop_assert!(is_binary(&binary));
            prop_assert_eq!(Verdict::from_binary(&binary), Ok(verdict.clone()));
            let reason = verdict.reason.as_str();
            let fields = [Field::Int(i64::from(verdict.allowed)), Field::Text(reason.as_bytes())]
                .into_iter()
                .chain(verdict.numbers().map(Field::Int));
            prop_assert_eq!(Verdict::decode(fields), Ok(verdict));
        }

        /// Any string at all is read without a panic; only ten words can be a verdict.
        #[test]
        fn any_bytes_are_read_or_refused_as_a_single_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let read = Verdict::from_binary(&bytes);
            if bytes.len() != VERDICT_BINARY_LEN {
                prop_assert!(read.is_err());
            }
        }
    }

    #[test]
    fn a_single_verdict_refuses_a_reason_check_never_gives() {
        let verdict = Verdict {
            allowed: false,
            reason: Reason::Denied(Dimension::OutputTokens),
            retry_after_ms: 5,
            remaining: [1, 2, 3],
            reset_ms: [4, 5, 6],
            ticket: 0,
        };
        let mut bytes = verdict.to_binary();
        assert_eq!(bytes[WORD], 3, "otpm is code 3, as in MCHECK's reply");
        for code in [4u8, 5, 6] {
            bytes[WORD] = code;
            assert!(Verdict::from_binary(&bytes).is_err());
        }
        bytes[WORD] = 3;
        bytes[0] = 2;
        assert!(Verdict::from_binary(&bytes).is_err());
    }

    #[test]
    fn reason_codes_follow_the_order_of_the_reasons() {
        assert_eq!(reason_code(None), 0);
        assert_eq!(reason_code(Some(Limit::Summed(Dimension::Requests))), 1);
        assert_eq!(reason_code(Some(Limit::Concurrency)), 5);
        for code in 0..=5 {
            let reason = reason_of_code(code).expect("a known code");
            assert_eq!(reason_code(reason), code);
        }
        assert_eq!(reason_of_code(6), None);
        assert_eq!(reason_of_code(-1), None);
        assert_eq!(reason_of_code(i64::MIN), None);
    }

    #[test]
    fn a_wrong_flag_or_reason_is_an_error() {
        let verdict = MultiVerdict {
            allowed: true,
            reason: None,
            scope: None,
            retry_after_ms: 0,
            remaining: [-1; REPORTED],
            reset_ms: [0; REPORTED],
            ticket: 7,
            scopes: Vec::new(),
        };
        let mut bytes = verdict.to_binary();
        bytes[0] = 2;
        assert!(MultiVerdict::from_binary(&bytes).is_err());
        bytes[0] = 1;
        bytes[WORD] = 9;
        assert!(MultiVerdict::from_binary(&bytes).is_err());
    }
}
