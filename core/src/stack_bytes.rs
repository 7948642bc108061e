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
}
