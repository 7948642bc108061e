//! The packed reply's comma-separated fields, written and read. The module writes one packed
//! MCHECK reply per request (fifteen numbers, then thirteen per scope) and a gateway reads it:
//! both sides go field by field in one pass.

/// The longest number a packed reply holds: `-9223372036854775808`.
pub const NUMBER_MAX: usize = 20;

/// Two decimal digits per entry, `00` to `99`.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes fields into a buffer sized up front (with [`NUMBER_MAX`] + 1 bytes to spare at its
/// end). A number is formatted two digits at a time and copied, with the comma before it, as a
/// fixed block whose length is counted after: copies of varying length went through `memcpy`,
/// one call per number. Never panics: past the end of the buffer nothing more is written and
/// [`PackedWriter::finish`] says so.
pub struct PackedWriter<'a> {
    out: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> PackedWriter<'a> {
    pub fn new(out: &'a mut [u8]) -> PackedWriter<'a> {
        PackedWriter {
            out,
            len: 0,
            overflowed: false,
        }
    }

    pub fn byte(&mut self, byte: u8) {
        match self.out.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        match self.out.get_mut(self.len..self.len + bytes.len()) {
            Some(slots) => {
                slots.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflowed = true,
        }
    }

    /// `,` then the number, in one copy.
    #[inline]
    pub fn field(&mut self, value: i64) {
        // The two commonest figures, -1 (unlimited) and 0, written as they are.
        match value {
            -1 => return self.bytes(b",-1"),
            0 => return self.bytes(b",0"),
            _ => {}
        }
        // Other single digits are most of the rest.
        if let Some(digit) = u8::try_from(value.unsigned_abs()).ok().filter(|d| *d < 10) {
            let digit = b'0' + digit;
            let (block, len) = if value < 0 {
                ([b',', b'-', digit], 3)
            } else {
                ([b',', digit, 0], 2)
            };
            match self.out.get_mut(self.len..self.len + block.len()) {
                Some(slots) => {
                    slots.copy_from_slice(&block);
                    self.len += len;
                }
                None => self.overflowed = true,
            }
            return;
        }
        // Written backwards to end at 2 * BLOCK, so the block copied from where it starts (at
        // least BLOCK before that end) never runs past the array.
        const BLOCK: usize = NUMBER_MAX + 1;
        let mut digits = [0u8; BLOCK * 3];
        let end = BLOCK * 2;
        let mut start = end;
        let mut rest = value.unsigned_abs();
        // Four digits a division while there are more than four, then two.
        while rest >= 10_000 {
            let four = (rest % 10_000) as usize;
            rest /= 10_000;
            start -= 4;
            let (high, low) = ((four / 100) * 2, (four % 100) * 2);
            if let (Some(slots), Some(high), Some(low)) = (
                digits.get_mut(start..start + 4),
                PAIRS.get(high..high + 2),
                PAIRS.get(low..low + 2),
            ) {
                let (left, right) = slots.split_at_mut(2);
                left.copy_from_slice(high);
                right.copy_from_slice(low);
            }
        }
        while rest >= 10 {
            let pair = (rest % 100) as usize * 2;
            rest /= 100;
            start -= 2;
            if let (Some(slots), Some(pair)) =
                (digits.get_mut(start..start + 2), PAIRS.get(pair..pair + 2))
            {
                slots.copy_from_slice(pair);
            }
        }
        // The first digit stands alone when the count is odd.
        if rest > 0 {
            start -= 1;
            if let Some(slot) = digits.get_mut(start) {
                *slot = b'0' + rest as u8;
            }
        }
        for (byte, wanted) in [(b'-', value < 0), (b',', true)] {
            if wanted {
                start -= 1;
                if let Some(slot) = digits.get_mut(start) {
                    *slot = byte;
                }
            }
        }
        match (
            self.out.get_mut(self.len..self.len + BLOCK),
            digits.get(start..start + BLOCK),
        ) {
            (Some(slots), Some(block)) => {
                slots.copy_from_slice(block);
                self.len += end - start;
            }
            _ => self.overflowed = true,
        }
    }

    /// What was written; `None` if the buffer was too short for it.
    pub fn finish(self) -> Option<&'a [u8]> {
        if self.overflowed {
            return None;
        }
        let out: &'a [u8] = self.out;
        out.get(..self.len)
    }
}

/// Comma-separated fields read front to back. A gateway reads some 80 of them per five-scope
/// MCHECK: each integer is parsed in the same pass that finds its end.
pub(crate) struct Fields<'a> {
    /// What follows the last comma read; `None` once the last field has been read.
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(packed: &'a [u8]) -> Fields<'a> {
        Fields { rest: Some(packed) }
    }

    pub(crate) fn text(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.iter().position(|byte| *byte == b',') {
            Some(comma) => {
                self.rest = rest.get(comma + 1..);
                rest.get(..comma)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }

    /// The next field as a decimal i64, as a reply writes it (`-1`, `60000`); anything else is
    /// `None`.
    pub(crate) fn integer(&mut self) -> Option<i64> {
        let rest = self.rest?;
        let (negative, mut digits) = match rest {
            [b'-', tail @ ..] => (true, tail),
            _ => (false, rest),
        };
        // Accumulated negative: i64::MIN has no positive counterpart.
        let mut value: i64 = 0;
        let mut any = false;
        loop {
            match digits.split_first() {
                Some((b',', tail)) => {
                    self.rest = Some(tail);
                    break;
                }
                Some((byte, tail)) => {
                    let digit = byte.wrapping_sub(b'0');
                    if digit > 9 {
                        return None;
                    }
                    value = value.checked_mul(10)?.checked_sub(i64::from(digit))?;
                    any = true;
                    digits = tail;
                }
                None => {
                    self.rest = None;
                    break;
                }
            }
        }
        if !any {
            return None;
        }
        if negative {
            Some(value)
        } else {
            value.checked_neg()
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers written as fields: each after a comma.
    fn written(values: &[i64]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; values.len() * (NUMBER_MAX + 1) + NUMBER_MAX];
        let mut writer = PackedWriter::new(&mut out);
        for value in values {
            writer.field(*value);
        }
        writer.finish().map(<[u8]>::to_vec)
    }

    fn as_fields(values: &[i64]) -> String {
        values.iter().map(|value| format!(",{value}")).collect()
    }

    #[test]
    fn numbers_are_written_as_decimal() {
        let edges = [
            0,
            1,
            -1,
            0,
            -9,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            60000,
            i64::MAX,
            i64::MIN,
        ];
        assert_eq!(written(&edges), Some(as_fields(&edges).into_bytes()));
    }

    #[test]
    fn a_short_buffer_is_reported_not_overrun() {
        // Room for ",1234" but not for the block a number is copied in.
        let mut out = [0u8; NUMBER_MAX];
        let mut writer = PackedWriter::new(&mut out);
        writer.field(1234);
        assert_eq!(writer.finish(), None);
        let mut out = [0u8; 2];
        let mut writer = PackedWriter::new(&mut out);
        writer.bytes(b"ok!");
        assert_eq!(writer.finish(), None);
    }

    proptest::proptest! {
        /// Any numbers come out as `to_string` writes them and read back as themselves.
        #[test]
        fn numbers_round_trip(values in proptest::collection::vec(
            proptest::prop_oneof![proptest::num::i64::ANY, -12i64..12], 1..40,
        )) {
            let packed = written(&values).unwrap_or_default();
            let expected = as_fields(&values);
            proptest::prop_assert_eq!(&packed, expected.as_bytes());
            // Read as a reply reads them: after the field before the first comma.
            let mut fields = Fields::new(packed.get(1..).unwrap_or_default());
            for value in &values {
                proptest::prop_assert_eq!(fields.integer(), Some(*value));
            }
            proptest::prop_assert!(fields.at_end());
        }
    }

    /// What [`Fields::integer`] must give for a field and what follows it: the standard
    /// library's reading of the text up to the first comma (no `+`), and the rest after it.
    fn reference(packed: &[u8]) -> (Option<i64>, Option<&[u8]>) {
        let (field, rest) = match packed.iter().position(|byte| *byte == b',') {
            Some(comma) => (&packed[..comma], Some(&packed[comma + 1..])),
            None => (packed, None),
        };
        let value = std::str::from_utf8(field)
            .ok()
            .filter(|text| !text.starts_with('+'))
            .and_then(|text| text.parse::<i64>().ok());
        (value, rest)
    }

    /// Numbers of every length up to past i64's, signed and not, before every kind of end:
    /// several commas, other bytes, digits after a comma, the end itself.
    #[test]
    fn integers_of_every_length_read_up_to_their_comma() {
        let all_digits = "98765432109876543210123";
        for sign in ["", "-"] {
            for len in 0..=21 {
                for end in [
                    "",
                    ",",
                    ",,",
                    ",,,,,,,,,,,,,,,,,,",
                    ",7",
                    ",12345678,1",
                    "x,",
                    ";1,2",
                    "9",
                ] {
                    for pad in ["", ",,,,,,,,,,,,,,,,", "12345678901234567890"] {
                        let text = format!("{sign}{}{end}{pad}", &all_digits[..len]);
                        let mut fields = Fields::new(text.as_bytes());
                        let (value, rest) = reference(text.as_bytes());
                        assert_eq!(fields.integer(), value, "{text}");
                        if value.is_some() {
                            assert_eq!(fields.rest, rest, "{text}");
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Integers of packed figures read as the standard library reads them, each up to its
        /// comma.
        #[test]
        fn packed_integers_parse_as_the_standard_library_does(text in "-?[0-9]{0,21}[a+ ]?", then in "(,[0-9a-z,-]{0,12})?") {
            let expected = if text.bytes().any(|b| b == b'+') { None } else { text.parse::<i64>().ok() };
            let joined = format!("{text}{then}");
            let mut fields = Fields::new(joined.as_bytes());
            proptest::prop_assert_eq!(fields.integer(), expected);
            if expected.is_some() {
                let rest = then.strip_prefix(',').map(str::as_bytes);
                proptest::prop_assert_eq!(fields.rest, rest);
            }
        }
    }
}
