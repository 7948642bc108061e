//! A compact ring of bucket rows.
//!
//! Each row holds three counters (requests, input tokens, output tokens). A full key has 61 rows,
//! so the storage is what decides whether a key fits in 1 KiB: every column is packed with the
//! smallest byte width (1, 2, 4 or 8) that holds its largest value, all rows live in one
//! allocation, and the capacity grows with the span of buckets actually in use, so a key that saw
//! one request holds one small row rather than a whole window of zeros.
//!
//! Nothing here can panic on any input: every byte access is bounds-checked with `get`.

/// One bucket's counters: requests, input tokens, output tokens (and, in a scope of the
/// multi-scope check, its fourth summed dimension).
pub type Row<const N: usize = 3> = [u64; N];

/// The most rows a ring ever needs (the current bucket plus one window of 60 behind it).
pub const MAX_ROWS: usize = 61;

const WIDTHS: [u8; 4] = [1, 2, 4, 8];

#[derive(Clone, Debug)]
pub struct Ring<const N: usize = 3> {
    /// `cap` rows of `stride()` bytes each, little-endian counters.
    bytes: Vec<u8>,
    /// Physical index of the oldest row.
    start: u8,
    len: u8,
    cap: u8,
    /// Byte width of each column.
    widths: [u8; N],
}

fn width_for(value: u64) -> u8 {
    let mut width = 8;
    for candidate in WIDTHS {
        if candidate == 8 || value < (1u64 << (u32::from(candidate) * 8)) {
            width = candidate;
            break;
        }
    }
    width
}

/// A little-endian number of `width` bytes (at most 8; 0 reads 0), byte by byte: widths vary
/// per column, and a byte loop avoids a `memcpy` call per counter read.
fn read_le(bytes: &[u8], offset: usize, width: u8) -> u64 {
    let width = usize::from(width).min(8);
    let Some(src) = bytes.get(offset..offset.saturating_add(width)) else {
        return 0;
    };
    src.iter()
        .rev()
        .fold(0u64, |value, byte| (value << 8) | u64::from(*byte))
}

fn write_le(bytes: &mut [u8], offset: usize, width: u8, value: u64) {
    let width = usize::from(width).min(8);
    if let Some(dst) = bytes.get_mut(offset..offset.saturating_add(width)) {
        for (slot, byte) in dst.iter_mut().zip(value.to_le_bytes()) {
            *slot = byte;
        }
    }
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Ring<N> {
    pub fn new() -> Self {
        Ring {
            bytes: Vec::new(),
            start: 0,
            len: 0,
            cap: 0,
            widths: [1; N],
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated on the heap (for MEMORY USAGE).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    fn stride(&self) -> usize {
        self.widths.iter().map(|w| usize::from(*w)).sum()
    }

    fn physical(&self, row: usize) -> usize {
        // start < cap and row < len <= cap, so one subtraction wraps it; the modulo only keeps a
        // broken invariant in range instead of trusting it.
        let cap = usize::from(self.cap).max(1);
        let index = usize::from(self.start) + row;
        match index.checked_sub(cap) {
            None => index,
            Some(wrapped) if wrapped < cap => wrapped,
            Some(wrapped) => wrapped % cap,
        }
    }

    /// One counter (column `column`) of logical row `row`; 0 past the end. Cheaper than
    /// [`Ring::get`] for scans that look at a single dimension.
    pub fn value(&self, row: usize, column: usize) -> u64 {
        if row >= self.len() {
            return 0;
        }
        let Some(&width) = self.widths.get(column) else {
            return 0;
        };
        let before: usize = self
            .widths
            .iter()
            .take(column)
            .map(|w| usize::from(*w))
            .sum();
        read_le(
            &self.bytes,
            self.physical(row) * self.stride() + before,
            width,
        )
    }

    /// The counters of logical row `row` (0 = oldest); zeros past the end.
    pub fn get(&self, row: usize) -> Row<N> {
        if row >= self.len() {
            return [0; N];
        }
        let mut offset = self.physical(row) * self.stride();
        let mut out = [0u64; N];
        for (value, width) in out.iter_mut().zip(self.widths) {
            *value = read_le(&self.bytes, offset, width);
            offset += usize::from(width);
        }
        out
    }

    /// Overwrite logical row `row` (ignored past the end), widening columns when needed.
    pub fn set(&mut self, row: usize, values: Row<N>) {
        if row >= self.len() {
            return;
        }
        let mut needed = self.widths;
        for (need, value) in needed.iter_mut().zip(values) {
            *need = (*need).max(width_for(value));
        }
        if needed != self.widths {
            self.rebuild(usize::from(self.cap), needed);
        }
        let mut offset = self.physical(row) * self.stride();
        for (value, width) in values.into_iter().zip(self.widths) {
            write_le(&mut self.bytes, offset, width, value);
            offset += usize::from(width);
        }
    }

    /// Append a row of zeros as the newest row. Does nothing once `MAX_ROWS` are held.
    pub fn push_back_zero(&mut self) {
        if self.len() >= MAX_ROWS {
            return;
        }
        if self.len == self.cap {
            let grown = (usize::from(self.cap) * 2).clamp(2, MAX_ROWS);
            self.rebuild(grown, self.widths);
        }
        let row = self.len();
        self.len += 1;
        let offset = self.physical(row) * self.stride();
        let stride = self.stride();
        if let Some(slot) = self.bytes.get_mut(offset..offset + stride) {
            slot.fill(0);
        }
    }

    /// Remove and return the oldest row (zeros when empty).
    pub fn pop_front(&mut self) -> Row<N> {
        if self.len == 0 {
            return [0; N];
        }
        let row = self.get(0);
        self.start = ((usize::from(self.start) + 1) % usize::from(self.cap).max(1)) as u8;
        self.len -= 1;
        if self.len == 0 {
            self.start = 0;
        }
        row
    }

    /// Drop every row and release the allocation.
    pub fn clear(&mut self) {
        *self = Ring::new();
    }

    /// Give memory back once most of the capacity is unused.
    pub fn shrink_if_sparse(&mut self) {
        if self.cap > 4 && usize::from(self.len) * 4 <= usize::from(self.cap) {
            let target = (self.len() * 2).max(2);
            self.rebuild(target, self.widths);
        }
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Row<N>> + ExactSizeIterator + '_ {
        (0..self.len()).map(move |row| self.get(row))
    }

    /// Re-lay the rows out linearly with a new capacity and column widths.
    fn rebuild(&mut self, cap: usize, widths: [u8; N]) {
        let cap = cap.clamp(self.len(), MAX_ROWS);
        let rows: Vec<Row<N>> = self.iter().collect();
        let stride: usize = widths.iter().map(|w| usize::from(*w)).sum();
        let mut bytes = vec![0; cap * stride];
        for (index, row) in rows.iter().enumerate() {
            let mut offset = index * stride;
            for (value, width) in row.iter().zip(widths) {
                write_le(&mut bytes, offset, width, *value);
                offset += usize::from(width);
            }
        }
        self.bytes = bytes;
        self.widths = widths;
        self.start = 0;
        self.cap = cap as u8;
    }

    /// Build a ring holding exactly `rows` (oldest first), tightly sized. Extra rows past
    /// `MAX_ROWS` are ignored; callers validate lengths first.
    pub fn from_rows(rows: &[Row<N>]) -> Self {
        let mut ring = Ring::new();
        let rows = rows.get(..rows.len().min(MAX_ROWS)).unwrap_or(&[]);
        let mut widths = [1u8; N];
        for row in rows {
            for (width, value) in widths.iter_mut().zip(row) {
                *width = (*width).max(width_for(*value));
            }
        }
        ring.rebuild(rows.len(), widths);
        ring.len = rows.len() as u8;
        for (index, row) in rows.iter().enumerate() {
            ring.set(index, *row);
        }
        ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn widths_fit_values() {
        assert_eq!(width_for(0), 1);
        assert_eq!(width_for(255), 1);
        assert_eq!(width_for(256), 2);
        assert_eq!(width_for(65_535), 2);
        assert_eq!(width_for(65_536), 4);
        assert_eq!(width_for(u64::from(u32::MAX)), 4);
        assert_eq!(width_for(u64::from(u32::MAX) + 1), 8);
        assert_eq!(width_for(u64::MAX), 8);
    }

    #[test]
    fn full_ring_with_typical_values_is_small() {
        let mut ring: Ring = Ring::new();
        for i in 0..MAX_ROWS {
            ring.push_back_zero();
            ring.set(i, [1_000, 1_000_000, 100_000]);
        }
        assert_eq!(ring.len(), MAX_ROWS);
        // 2 + 4 + 4 bytes a row.
        assert!(ring.heap_bytes() <= MAX_ROWS * 10, "{}", ring.heap_bytes());
        ring.push_back_zero();
        assert_eq!(ring.len(), MAX_ROWS, "never holds more than a window");
    }

    #[test]
    fn out_of_range_access_is_harmless() {
        let mut ring: Ring = Ring::new();
        assert_eq!(ring.get(5), [0; 3]);
        ring.set(5, [1, 2, 3]);
        assert_eq!(ring.pop_front(), [0; 3]);
        assert!(ring.is_empty());
    }

    proptest::proptest! {
        /// The packed ring behaves exactly like a deque of rows.
        #[test]
        fn behaves_like_a_deque(ops in proptest::collection::vec((0u8..5, 0usize..70, proptest::array::uniform3(proptest::prelude::any::<u64>()), 0u32..64), 1..300)) {
            let mut ring: Ring = Ring::new();
            let mut model: VecDeque<Row> = VecDeque::new();
            for (op, index, values, shift) in ops {
                let values = values.map(|v| v >> shift);
                match op {
                    0 | 1 => {
                        ring.push_back_zero();
                        if model.len() < MAX_ROWS { model.push_back([0; 3]); }
                    }
                    2 => { proptest::prop_assert_eq!(ring.pop_front(), model.pop_front().unwrap_or([0; 3])); }
                    3 => {
                        ring.set(index, values);
                        if let Some(row) = model.get_mut(index) { *row = values; }
                    }
                    _ => ring.shrink_if_sparse(),
                }
                proptest::prop_assert_eq!(ring.len(), model.len());
                let rows: Vec<Row> = ring.iter().collect();
                let expected: Vec<Row> = model.iter().copied().collect();
                proptest::prop_assert_eq!(&rows, &expected);
                proptest::prop_assert_eq!(Ring::from_rows(&expected).iter().collect::<Vec<_>>(), expected);
            }
        }
    }
}
