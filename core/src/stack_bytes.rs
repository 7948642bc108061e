//! Short byte strings built on the stack: what a command packs for every scope of every call
//! (replicated effects, packed figures), without an allocation each.

pub struct StackBytes<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackBytes<N> {
    fn default() -> Self {
        StackBytes {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StackBytes<N> {
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    /// Append `text`; what would not fit is left out (each user sizes `N` for its longest
    /// content).
    pub fn push(&mut self, text: &[u8]) {
        if let Some(out) = self.bytes.get_mut(self.len..self.len + text.len()) {
            out.copy_from_slice(text);
            self.len += text.len();
        }
    }

    /// The next `n` unwritten bytes, for a writer that fills them in place and then calls
    /// [`StackBytes::advance`]; `None` if fewer are left.
    pub fn spare(&mut self, n: usize) -> Option<&mut [u8]> {
        self.bytes.get_mut(self.len..self.len + n)
    }

    pub fn advance(&mut self, written: usize) {
        self.len = (self.len + written).min(N);
    }

    /// Append `number` as unsigned LEB128, what packed effects are made of. Users size `N` for
    /// ten bytes a number (a u64's longest); most numbers of an effect are below 128, one byte.
    pub fn push_leb128(&mut self, number: u64) {
        if number < 0x80 {
            self.push(&[number as u8]);
            return;
        }
        let Some(out) = self.spare(10) else {
            return;
        };
        let mut rest = number;
        let mut written = 0;
        for slot in out.iter_mut() {
            let byte = (rest & 0x7f) as u8;
            rest >>= 7;
            written += 1;
            if rest == 0 {
                *slot = byte;
                break;
            }
            *slot = byte | 0x80;
        }
        self.advance(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits() {
        let mut bytes = StackBytes::<4>::default();
        bytes.push(b"ab");
        bytes.push(b"cde");
        assert_eq!(bytes.as_slice(), b"ab");
        bytes.push(b"cd");
        assert_eq!(bytes.as_slice(), b"abcd");
        assert!(bytes.spare(1).is_none());
    }

    proptest::proptest! {
        /// The same bytes as the byte-at-a-time encoder that `pack_numbers` uses.
        #[test]
        fn leb128_as_the_reference_writes_it(numbers: Vec<u64>) {
            let mut fast = StackBytes::<4096>::default();
            let mut reference = Vec::new();
            for number in numbers.iter().take(400) {
                fast.push_leb128(*number);
                crate::encoding::leb128(*number, |byte| reference.push(byte));
            }
            proptest::prop_assert_eq!(fast.as_slice(), reference.as_slice());
        }
    }
}
