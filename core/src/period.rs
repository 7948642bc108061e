//! Calendar periods: a day, an ISO week (from Monday) or a month (from the 1st), aligned to UTC
//! shifted by a fixed offset in minutes — the periods providers and budgets reset on ("per day,
//! midnight Pacific", "per month"). Pure arithmetic on millisecond timestamps, no time zone
//! database: an offset is fixed, so a zone with daylight saving is given as one of its offsets.
//!
//! (Building block of the multi-scope check; see issue #12.)

use thiserror::Error;

pub const MINUTE_MS: i128 = 60_000;
pub const DAY_MS: i128 = 86_400_000;
/// Offsets are strictly within one day either way.
pub const MAX_OFFSET_MINUTES: i32 = 24 * 60 - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    /// ISO week: Monday 00:00 to the next Monday 00:00.
    Week,
    /// From the 1st 00:00 to the next month's 1st.
    Month,
}

/// A calendar period in a fixed UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    pub kind: PeriodKind,
    /// Local time = UTC + offset; e.g. -480 for UTC-8 (Pacific standard time).
    pub offset_minutes: i32,
}

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum PeriodError {
    #[error("a period is day, week or month, optionally with :<offset minutes>, e.g. day:-480")]
    Syntax,
    #[error("a period's offset must be within 1439 minutes of UTC")]
    Offset,
}

impl Period {
    pub fn new(kind: PeriodKind, offset_minutes: i32) -> Result<Period, PeriodError> {
        if offset_minutes.abs() > MAX_OFFSET_MINUTES {
            return Err(PeriodError::Offset);
        }
        Ok(Period {
            kind,
            offset_minutes,
        })
    }

    /// `day`, `week` or `month` (any case), optionally followed by `:<signed minutes>`.
    pub fn parse(text: &[u8]) -> Result<Period, PeriodError> {
        let text = std::str::from_utf8(text).map_err(|_| PeriodError::Syntax)?;
        let (name, offset) = match text.split_once(':') {
            Some((name, offset)) => (name, Some(offset)),
            None => (text, None),
        };
        // Compared in place: this runs for every calendar scope of every MCHECK.
        let kind = [
            ("day", PeriodKind::Day),
            ("week", PeriodKind::Week),
            ("month", PeriodKind::Month),
        ]
        .into_iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|(_, kind)| kind)
        .ok_or(PeriodError::Syntax)?;
        let offset = match offset {
            None => 0,
            Some(digits) => {
                let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PeriodError::Syntax);
                }
                digits.parse::<i32>().map_err(|_| PeriodError::Offset)?
            }
        };
        Period::new(kind, offset)
    }

    /// The canonical text form (`month:-480`), what `parse` reads.
    pub fn name(&self) -> String {
        let kind = match self.kind {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        };
        if self.offset_minutes == 0 {
            kind.to_string()
        } else {
            format!("{kind}:{}", self.offset_minutes)
        }
    }

    fn offset_ms(&self) -> i128 {
        i128::from(self.offset_minutes) * MINUTE_MS
    }

    /// The period holding `t_ms`: its start and end (exclusive), in UTC ms. Times before the
    /// epoch (only reachable with an offset) are clamped to 0.
    pub fn bounds(&self, t_ms: u64) -> (u64, u64) {
        let local = i128::from(t_ms) + self.offset_ms();
        let days = local.div_euclid(DAY_MS);
        let (start_day, end_day) = match self.kind {
            PeriodKind::Day => (days, days + 1),
            PeriodKind::Week => {
                // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
                let monday = days - (days + 3).rem_euclid(7);
                (monday, monday + 7)
            }
            PeriodKind::Month => {
                let (year, month, _) = civil_from_days(days);
                let next = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (
                    days_from_civil(year, month, 1),
                    days_from_civil(next.0, next.1, 1),
                )
            }
        };
        let to_utc = |day: i128| {
            let ms = day * DAY_MS - self.offset_ms();
            u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
        };
        (to_utc(start_day), to_utc(end_day))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i128, month: u32, day: u32) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i128::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i128::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01: (year, month 1-12, day 1-31).
pub fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-12-01T19:30:00Z, a Tuesday.
    const T: u64 = 1_796_153_400_000;

    fn utc(year: i128, month: u32, day: u32, hour: i128, minute: i128) -> u64 {
        let ms = days_from_civil(year, month, day) * DAY_MS + hour * 3_600_000 + minute * MINUTE_MS;
        u64::try_from(ms).unwrap()
    }

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(utc(2026, 12, 1, 19, 30), T);
    }

    #[test]
    fn days_weeks_and_months_in_utc_and_offsets() {
        let day = Period::new(PeriodKind::Day, 0).unwrap();
        assert_eq!(
            day.bounds(T),
            (utc(2026, 12, 1, 0, 0), utc(2026, 12, 2, 0, 0))
        );
        // Midnight Pacific (UTC-8) is 08:00 UTC.
        let pacific = Period::parse(b"day:-480").unwrap();
        assert_eq!(
            pacific.bounds(T),
            (utc(2026, 12, 1, 8, 0), utc(2026, 12, 2, 8, 0))
        );
        assert_eq!(
            pacific.bounds(utc(2026, 12, 1, 7, 59)),
            (utc(2026, 11, 30, 8, 0), utc(2026, 12, 1, 8, 0))
        );
        // UTC+9 (Tokyo): 19:30 UTC is already Wednesday 04:30 local.
        let tokyo_week = Period::parse(b"WEEK:+540").unwrap();
        assert_eq!(
            tokyo_week.bounds(T),
            (utc(2026, 11, 29, 15, 0), utc(2026, 12, 6, 15, 0))
        );
        let week = Period::parse(b"week").unwrap();
        assert_eq!(
            week.bounds(T),
            (utc(2026, 11, 30, 0, 0), utc(2026, 12, 7, 0, 0))
        );
        let month = Period::parse(b"month").unwrap();
        assert_eq!(
            month.bounds(T),
            (utc(2026, 12, 1, 0, 0), utc(2027, 1, 1, 0, 0))
        );
        let february = month.bounds(utc(2028, 2, 29, 23, 59));
        assert_eq!(february, (utc(2028, 2, 1, 0, 0), utc(2028, 3, 1, 0, 0)));
        assert_eq!(Period::parse(b"month:-60").unwrap().name(), "month:-60");
    }

    #[test]
    fn bad_periods_are_refused() {
        for bad in [
            &b"days"[..],
            b"day:",
            b"day:x",
            b"day:--5",
            b"",
            b"\xff",
            b"day:1e3",
        ] {
            assert_eq!(Period::parse(bad), Err(PeriodError::Syntax), "{bad:?}");
        }
        assert_eq!(Period::parse(b"day:1440"), Err(PeriodError::Offset));
        assert_eq!(Period::parse(b"day:-99999999999"), Err(PeriodError::Offset));
        assert!(Period::parse(b"day:-1439").is_ok());
    }

    proptest! {
        #[test]
        fn periods_tile_time(
            t in 0u64..8_000_000_000_000,
            kind in prop_oneof![Just(PeriodKind::Day), Just(PeriodKind::Week), Just(PeriodKind::Month)],
            offset in -MAX_OFFSET_MINUTES..=MAX_OFFSET_MINUTES,
        ) {
            let period = Period::new(kind, offset).unwrap();
            let (start, end) = period.bounds(t);
            prop_assert!(start <= t && t < end || start == 0);
            // The next period starts where this one ends.
            prop_assert_eq!(period.bounds(end).0, end);
            let length_days = (end - start) as i128 / DAY_MS;
            let local_start = i128::from(start) + i128::from(offset) * MINUTE_MS;
            if start > 0 {
                prop_assert_eq!(local_start.rem_euclid(DAY_MS), 0, "starts at local midnight");
                let (_, _, day_of_month) = civil_from_days(local_start.div_euclid(DAY_MS));
                match kind {
                    PeriodKind::Day => prop_assert_eq!(length_days, 1),
                    PeriodKind::Week => {
                        prop_assert_eq!(length_days, 7);
                        prop_assert_eq!((local_start.div_euclid(DAY_MS) + 3).rem_euclid(7), 0, "a Monday");
                    }
                    PeriodKind::Month => {
                        prop_assert!((28..=31).contains(&length_days));
                        prop_assert_eq!(day_of_month, 1);
                    }
                }
            }
        }

        #[test]
        fn dates_round_trip(days in -1_000_000i128..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
