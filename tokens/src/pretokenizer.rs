//! Splitting text into the pieces the byte-pair encoder sees, as tiktoken's regex does, with a
//! regex cache of each thread's own.

use crate::ascii::{self, Flavor};
use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An encoding's pre-tokenization patterns as `bpe-openai` builds its regex: tiktoken's pattern,
/// with its negative look-ahead `\s+(?!\S)` rewritten as a second pattern that matches one
/// character too many (`\s+\s`), dropped from the piece, and a third, plain `\s+`. Which
/// pattern matched says whether to drop that last character.
pub struct Patterns {
    pub patterns: &'static [(&'static str, bool)],
    /// The same patterns by hand, for ASCII text.
    pub flavor: Flavor,
}

impl Patterns {
    pub const O200K: Patterns = Patterns {
        patterns: &[
            (
                concat!(
                    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
                    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
                    "|\\p{N}{1,3}",
                    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
                    "|\\s*[\\r\\n]+",
                    "|\\s+$",
                ),
                false,
            ),
            ("\\s+\\s", true),
            ("\\s+", false),
        ],
        flavor: Flavor::O200k,
    };

    pub const CL100K: Patterns = Patterns {
        patterns: &[
            (
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+$",
                false,
            ),
            ("\\s+\\s", true),
            ("\\s+", false),
        ],
        flavor: Flavor::Cl100k,
    };
}

/// Tells pre-tokenizers apart in the threads' cache lists.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's regex cache per pre-tokenizer (there are two, one per encoding). A search
    /// needs a mutable cache; owning one per thread avoids the regex's shared pool, whose fast
    /// path only serves the first thread that used it. Threads end with their caches (tokio's
    /// blocking threads after 10 s idle).
    static CACHES: RefCell<Vec<(usize, Cache)>> = const { RefCell::new(Vec::new()) };
}

pub struct Pretokenizer {
    id: usize,
    regex: Regex,
    /// Per pattern: whether its match ends with one look-ahead character to drop.
    lookahead: Vec<bool>,
    flavor: Flavor,
}

impl Pretokenizer {
    pub fn new(patterns: Patterns) -> Pretokenizer {
        let (sources, lookahead): (Vec<&str>, Vec<bool>) =
            patterns.patterns.iter().copied().unzip();
        Pretokenizer {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            // Constant patterns, checked by every test.
            regex: Regex::new_many(&sources).expect("the pre-tokenization patterns compile"),
            lookahead,
            flavor: patterns.flavor,
        }
    }

    /// Calls `piece` with each piece of `text`, in order.
    pub fn for_each_piece<'t>(&self, text: &'t str, mut piece: impl FnMut(&'t [u8])) {
        let split_here = |caches: &RefCell<Vec<(usize, Cache)>>| {
            let mut caches = caches.try_borrow_mut().ok()?;
            let at = match caches.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    caches.push((self.id, self.regex.create_cache()));
                    caches.len() - 1
                }
            };
            let (_, cache) = caches.get_mut(at)?;
            self.split(cache, text, &mut piece);
            Some(())
        };
        // No cache of its own only while the thread is torn down, or were `piece` to count on
        // this thread again: then a fresh one.
        if CACHES.try_with(split_here).ok().flatten().is_none() {
            self.split(&mut self.regex.create_cache(), text, &mut piece);
        }
    }

    fn split<'t>(&self, cache: &mut Cache, text: &'t str, piece: &mut impl FnMut(&'t [u8])) {
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let Some(end) = ascii::piece_end(bytes, start, self.flavor)
                .or_else(|| self.regex_piece_end(cache, text, start))
            else {
                return;
            };
            piece(bytes.get(start..end).unwrap_or_default());
            start = end;
        }
    }

    /// The end of the piece at `start` as the regex finds it.
    fn regex_piece_end(&self, cache: &mut Cache, text: &str, start: usize) -> Option<usize> {
        let rest = text.get(start..)?;
        let input = Input::new(rest).anchored(Anchored::Yes);
        // Every character matches some pattern; were one not to, the rest is not counted, as
        // in bpe-openai.
        let found = self.regex.search_with(cache, &input)?;
        let mut end = start + found.end();
        if self.lookahead.get(found.pattern().as_usize()) == Some(&true) {
            let last = rest
                .get(..found.end())
                .and_then(|matched| matched.chars().next_back())
                .map_or(0, char::len_utf8);
            // The look-ahead pattern matches at least two characters; keep progress anyway.
            if end - last > start {
                end -= last;
            }
        }
        (end > start).then_some(end)
    }

    /// The pieces of `text` as the regex alone finds them: what the hand-written ASCII path
    /// must agree with.
    #[cfg(test)]
    pub fn regex_pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut cache = self.regex.create_cache();
        let mut pieces = Vec::new();
        let mut start = 0;
        while let Some(end) = self.regex_piece_end(&mut cache, text, start) {
            pieces.extend(text.get(start..end));
            start = end;
        }
        pieces
    }
}
