//! The pre-tokenization patterns evaluated by hand on ASCII text, where they reduce to a few
//! byte classes: about ten times cheaper than the lazy DFA, whose match states slow every byte
//! of a word. Each function gives the end of the piece starting at `start` exactly as the regex
//! would (its leftmost-first choice, the look-ahead character dropped), or `None` as soon as
//! the answer depends on a byte of a wider character (a letter, a digit, a space or a case fold
//! of `s` outside ASCII): the regex decides that piece.

/// Which encoding's patterns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `o200k_base`: letters split by case, contractions kept with their word, `/` after
    /// punctuation.
    O200k,
    /// `cl100k_base`: contractions on their own, any letters together.
    Cl100k,
}

fn is_letter(byte: u8) -> bool {
    byte.is_ascii_alphabetic()
}

/// `\s` (Unicode White_Space) within ASCII: tab, line feed, vertical tab, form feed, carriage
/// return, space.
fn is_space(byte: u8) -> bool {
    matches!(byte, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

fn is_newline(byte: u8) -> bool {
    matches!(byte, b'\r' | b'\n')
}

/// `[^\r\n\p{L}\p{N}]`: what may precede a word.
fn is_prefix(byte: u8) -> bool {
    !(is_newline(byte) || byte.is_ascii_alphanumeric())
}

/// `[^\s\p{L}\p{N}]`: punctuation, symbols, control characters.
fn is_other(byte: u8) -> bool {
    !(is_space(byte) || byte.is_ascii_alphanumeric())
}

struct Text<'a>(&'a [u8]);

impl Text<'_> {
    /// The byte at `at`: `Some(None)` past the end, `None` (fall back) inside a wider character.
    fn at(&self, at: usize) -> Option<Option<u8>> {
        match self.0.get(at) {
            None => Some(None),
            Some(byte) if byte.is_ascii() => Some(Some(*byte)),
            Some(_) => None,
        }
    }

    /// Where the run of bytes `class` accepts, from `at`, ends.
    fn run(&self, mut at: usize, class: impl Fn(u8) -> bool) -> Option<usize> {
        while let Some(byte) = self.at(at)? {
            if !class(byte) {
                break;
            }
            at += 1;
        }
        Some(at)
    }

    /// Where `(?i:'s|'t|'re|'ve|'m|'ll|'d)` matched at `at` ends (`Some(None)`: it does not).
    fn contraction(&self, at: usize) -> Option<Option<usize>> {
        if self.at(at)? != Some(b'\'') {
            return Some(None);
        }
        let Some(first) = self.at(at + 1)? else {
            return Some(None);
        };
        let second = match first.to_ascii_lowercase() {
            b's' | b't' | b'm' | b'd' => return Some(Some(at + 2)),
            b'r' | b'v' => b'e',
            b'l' => b'l',
            _ => return Some(None),
        };
        let matched = self
            .at(at + 2)?
            .is_some_and(|byte| byte.to_ascii_lowercase() == second);
        Some(matched.then_some(at + 3))
    }

    /// `\p{N}{1,3}` at `start` (a digit).
    fn digits(&self, start: usize) -> Option<usize> {
        let mut at = start;
        while at - start < 3 {
            match self.at(at)? {
                Some(byte) if byte.is_ascii_digit() => at += 1,
                _ => break,
            }
        }
        Some(at)
    }

    /// Where a word starts if one starts at `start` after an optional prefix character.
    fn word_start(&self, start: usize, first: u8) -> Option<Option<usize>> {
        if is_letter(first) {
            return Some(Some(start));
        }
        if !is_prefix(first) {
            return Some(None);
        }
        Some(
            self.at(start + 1)?
                .filter(|b| is_letter(*b))
                .map(|_| start + 1),
        )
    }

    /// ` ?[^\s\p{L}\p{N}]+` at `start`: where the punctuation run ends, if there is one.
    fn punctuation(&self, start: usize, first: u8) -> Option<Option<usize>> {
        let from = if is_other(first) {
            start
        } else if first == b' ' && self.at(start + 1)?.is_some_and(is_other) {
            start + 1
        } else {
            return Some(None);
        };
        self.run(from, is_other).map(Some)
    }

    /// The whitespace patterns at `start` (a space): `\s*[\r\n]+`, then `\s+$`, then `\s+\s`
    /// without its look-ahead character, then `\s+`.
    fn whitespace(&self, start: usize) -> Option<usize> {
        let end = self.run(start, is_space)?;
        let run = self.0.get(start..end)?;
        // Greedy `\s*` gives back characters until `[\r\n]+` can match: up to the run's last
        // line break.
        if let Some(last) = run.iter().rposition(|byte| is_newline(*byte)) {
            return Some(start + last + 1);
        }
        if end == self.0.len() || end - start == 1 {
            return Some(end);
        }
        Some(end - 1)
    }
}

/// The end of the piece at `start` (before the end of `text`), or `None` to ask the regex.
pub fn piece_end(text: &[u8], start: usize, flavor: Flavor) -> Option<usize> {
    let text = Text(text);
    let first = text.at(start)??;
    if flavor == Flavor::Cl100k {
        if let Some(end) = text.contraction(start)? {
            return Some(end);
        }
    }
    if let Some(word) = text.word_start(start, first)? {
        return match flavor {
            Flavor::O200k => {
                let end = text.run(word, |b| b.is_ascii_uppercase())?;
                let end = text.run(end, |b| b.is_ascii_lowercase())?;
                Some(text.contraction(end)?.unwrap_or(end))
            }
            Flavor::Cl100k => text.run(word, is_letter),
        };
    }
    if first.is_ascii_digit() {
        return text.digits(start);
    }
    if let Some(end) = text.punctuation(start, first)? {
        return match flavor {
            Flavor::O200k => text.run(end, |b| is_newline(b) || b == b'/'),
            Flavor::Cl100k => text.run(end, is_newline),
        };
    }
    text.whitespace(start)
}
