//! Token counting with OpenAI's encodings (`o200k_base`, `cl100k_base`), exactly as OpenAI's
//! tiktoken counts, and fast enough to run on every request of a gateway.
//!
//! The byte-pair encoder is `bpe-openai`'s (linear time: a 1 MiB one-"word" prompt is never
//! quadratic). Around it this crate splits text into pieces its own way, with the same result:
//!
//! - **ASCII by hand.** Where the text is ASCII, tiktoken's patterns reduce to a few byte
//!   classes (`ascii`): a piece's end is found in a pass over its bytes, several times cheaper
//!   than the lazy DFA (whose match states slow every byte of a word). Wherever a piece's end
//!   depends on a wider character, the regex decides that piece.
//! - **Per-thread regex caches.** `bpe-openai` searches through the regex's shared cache pool,
//!   whose fast path serves only the first thread that used it; every other thread — every
//!   tokio worker but one — took a slower path per piece. Here each thread keeps its own cache.
//! - **Whole pieces looked up first**, as tiktoken does: most pieces (" the", "ing") are one
//!   token of the vocabulary, found with a hash lookup instead of running the encoder.
//!
//! Counts equal `bpe-openai`'s and tiktoken's, and the hand-written pieces the regex's: tests
//! compare them on a corpus and on random text. `make bench`'s Tokenizer table has the speed.

mod ascii;
mod pretokenizer;

use pretokenizer::Pretokenizer;
use rustc_hash::FxHashSet;
use std::sync::LazyLock;

/// The longest piece looked up as a whole token.
const WHOLE_PIECE_MAX: usize = 16;

/// One of OpenAI's encodings, ready to count.
pub struct Encoding {
    bpe: &'static bpe_openai::Tokenizer,
    pretokenizer: Pretokenizer,
    /// The bytes of every token of up to [`WHOLE_PIECE_MAX`] bytes (no longer piece is looked
    /// up): a piece found here is exactly one token.
    whole: FxHashSet<&'static [u8]>,
}

impl Encoding {
    fn new(bpe: &'static bpe_openai::Tokenizer, pretokenizer: Pretokenizer) -> Encoding {
        let tokens = u32::try_from(bpe.bpe.num_tokens()).unwrap_or(u32::MAX);
        Encoding {
            bpe,
            pretokenizer,
            whole: (0..tokens)
                .map(|token| bpe.bpe.token_bytes(token))
                .filter(|bytes| bytes.len() <= WHOLE_PIECE_MAX)
                .collect(),
        }
    }

    /// How many tokens `text` encodes to.
    pub fn count(&self, text: &str) -> usize {
        let mut tokens = 0;
        self.pretokenizer.for_each_piece(text, |piece| {
            // Longer pieces (a run of CJK, a long word) are seldom one token: hashing them
            // first would only add to the encoder's work.
            tokens += if piece.len() <= WHOLE_PIECE_MAX && self.whole.contains(piece) {
                1
            } else {
                self.bpe.bpe.count(piece)
            };
        });
        tokens
    }

    /// The underlying `bpe-openai` tokenizer, to encode and decode.
    pub fn tokenizer(&self) -> &'static bpe_openai::Tokenizer {
        self.bpe
    }
}

static O200K_BASE: LazyLock<Encoding> = LazyLock::new(|| {
    Encoding::new(
        bpe_openai::o200k_base(),
        Pretokenizer::new(pretokenizer::Patterns::O200K),
    )
});

static CL100K_BASE: LazyLock<Encoding> = LazyLock::new(|| {
    Encoding::new(
        bpe_openai::cl100k_base(),
        Pretokenizer::new(pretokenizer::Patterns::CL100K),
    )
});

/// GPT-4o and later models' encoding.
pub fn o200k_base() -> &'static Encoding {
    &O200K_BASE
}

/// GPT-4's and GPT-3.5's encoding (and the text-embedding-3 models').
pub fn cl100k_base() -> &'static Encoding {
    &CL100K_BASE
}

#[cfg(test)]
mod tests;
