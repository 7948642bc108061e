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
    /// content: ten bytes for each LEB128 number).
    pub fn push(&mut self, text: &[u8]) {
        if let Some(out) = self.bytes.get_mut(self.len..self.len + text.len()) {
            out.copy_from_slice(text);
            self.len += text.len();
        }
    }

    /// Append `number` as unsigned LEB128, what packed effects are made of. Most numbers of an
    /// effect are below 128: one byte, written without the byte-at-a-time encoder.
    pub fn push_leb128(&mut self, number: u64) {
        if number < 0x80 {
            self.push(&[number as u8]);
        } else {
            crate::encoding::leb128(number, |byte| self.push(&[byte]));
        }
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
