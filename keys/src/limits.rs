//! The limits any scope of the keys file can carry — a key, a key's model, a team, an
//! organisation, an upstream account's model pool — as written in the file, and checked.

use llmrl_core::period::{Period, PeriodKind};
use llmrl_core::window::validate_window;
use thiserror::Error;

pub const MINUTE_MS: u64 = 60_000;
pub const DAY_MS: u64 = 86_400_000;

/// Micro-dollars in a dollar: spend is counted in Redis in whole micro-dollars.
pub const MICRO_USD: f64 = 1_000_000.0;

/// Every limit field a scope accepts, as written in the file (0 or absent: unlimited).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitFields {
    pub rpm: u64,
    pub itpm: u64,
    pub otpm: u64,
    pub tpm: u64,
    pub rpd: u64,
    pub tpd: u64,
    pub max_parallel_requests: u64,
    pub day_reset: Option<String>,
    pub utc_offset_minutes: i32,
    pub day_window_ms: Option<u64>,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<String>,
}

/// How a day limit (`rpd`, `tpd`) counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayRule {
    /// The last 24 hours (or `day_window_ms`), sliding — as OpenAI's RPD.
    Rolling(u64),
    /// The calendar day, reset at midnight in a fixed UTC offset (Gemini: midnight Pacific).
    Calendar(Period),
}

/// How a spend budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetPeriod {
    Calendar(Period),
    /// A sliding window of this many ms.
    Rolling(u64),
}

/// A spend budget in micro-dollars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub micro_usd: u64,
    pub period: BudgetPeriod,
}

/// The checked limits of one scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitSet {
    pub rpm: u64,
    pub itpm: u64,
    pub otpm: u64,
    /// Input + output tokens per minute, as OpenAI counts TPM.
    pub tpm: u64,
    pub rpd: u64,
    /// Input + output tokens per day.
    pub tpd: u64,
    pub max_parallel_requests: u64,
    pub day: Option<DayRule>,
    pub budget: Option<Budget>,
}

#[derive(Debug, Error, PartialEq)]
pub enum LimitError {
    #[error("day_reset is \"rolling\" or \"midnight\", not {0:?}")]
    DayReset(String),
    #[error("utc_offset_minutes must be within 1439 minutes of UTC")]
    Offset,
    #[error("day_window_ms must be a positive multiple of 60")]
    DayWindow,
    #[error("window_ms must be a positive multiple of 60, at most 9223372036854775800")]
    Window,
    #[error("budget_usd must be a positive number of dollars (at most 18 trillion)")]
    BudgetAmount,
    #[error(
        "budget_period is day, week, month, or a rolling length like 30d, 24h, 90s; not {0:?}"
    )]
    BudgetPeriod(String),
    #[error("budget_period needs budget_usd")]
    PeriodWithoutBudget,
}

/// `30d`, `24h`, `15m`, `90s` as ms, a positive multiple of 60.
fn rolling_ms(text: &str) -> Option<u64> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let count: u64 = digits.parse().ok()?;
    let unit_ms = match unit {
        "d" => DAY_MS,
        "h" => 3_600_000,
        "m" => MINUTE_MS,
        "s" => 1_000,
        _ => return None,
    };
    let ms = count.checked_mul(unit_ms)?;
    validate_window(ms).ok()
}

impl LimitFields {
    /// Check the fields and turn them into limits.
    pub fn check(&self) -> Result<LimitSet, LimitError> {
        let offset = self.utc_offset_minutes;
        let period = |kind| Period::new(kind, offset).map_err(|_| LimitError::Offset);
        let day = if self.rpd > 0 || self.tpd > 0 {
            Some(match self.day_reset.as_deref().unwrap_or("rolling") {
                "rolling" => {
                    let ms = self.day_window_ms.unwrap_or(DAY_MS);
                    DayRule::Rolling(validate_window(ms).map_err(|_| LimitError::DayWindow)?)
                }
                "midnight" => DayRule::Calendar(period(PeriodKind::Day)?),
                other => return Err(LimitError::DayReset(other.to_string())),
            })
        } else {
            None
        };
        let budget = match (self.budget_usd, self.budget_period.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => return Err(LimitError::PeriodWithoutBudget),
            (Some(usd), period_text) => {
                let micro = usd * MICRO_USD;
                if !(1.0..1.8e19).contains(&micro) {
                    return Err(LimitError::BudgetAmount);
                }
                let text = period_text.unwrap_or("month");
                let budget_period = match text {
                    "day" => BudgetPeriod::Calendar(period(PeriodKind::Day)?),
                    "week" => BudgetPeriod::Calendar(period(PeriodKind::Week)?),
                    "month" => BudgetPeriod::Calendar(period(PeriodKind::Month)?),
                    other => BudgetPeriod::Rolling(
                        rolling_ms(other)
                            .ok_or_else(|| LimitError::BudgetPeriod(other.to_string()))?,
                    ),
                };
                Some(Budget {
                    micro_usd: micro.round() as u64,
                    period: budget_period,
                })
            }
        };
        Ok(LimitSet {
            rpm: self.rpm,
            itpm: self.itpm,
            otpm: self.otpm,
            tpm: self.tpm,
            rpd: self.rpd,
            tpd: self.tpd,
            max_parallel_requests: self.max_parallel_requests,
            day,
            budget,
        })
    }
}

/// Written out only when set (a stored or exported entry shows what it limits, not every zero).
pub(crate) fn is_zero(value: &u64) -> bool {
    *value == 0
}

pub(crate) fn is_zero_offset(value: &i32) -> bool {
    *value == 0
}

/// Declare a keys-file entry: its own fields plus every limit field (serde's `flatten` cannot be
/// combined with `deny_unknown_fields`, which turns a typo into an error instead of no limit).
macro_rules! entry_with_limits {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub rpm: u64,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub itpm: u64,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub otpm: u64,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub tpm: u64,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub rpd: u64,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub tpd: u64,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero")]
            pub max_parallel_requests: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub day_reset: Option<String>,
            #[serde(default, skip_serializing_if = "crate::limits::is_zero_offset")]
            pub utc_offset_minutes: i32,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub day_window_ms: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub budget_usd: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub budget_period: Option<String>,
        }

        impl $name {
            /// The limit fields as written.
            pub fn limit_fields(&self) -> $crate::limits::LimitFields {
                $crate::limits::LimitFields {
                    rpm: self.rpm,
                    itpm: self.itpm,
                    otpm: self.otpm,
                    tpm: self.tpm,
                    rpd: self.rpd,
                    tpd: self.tpd,
                    max_parallel_requests: self.max_parallel_requests,
                    day_reset: self.day_reset.clone(),
                    utc_offset_minutes: self.utc_offset_minutes,
                    day_window_ms: self.day_window_ms,
                    budget_usd: self.budget_usd,
                    budget_period: self.budget_period.clone(),
                }
            }
        }
    };
}
pub(crate) use entry_with_limits;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let plain = LimitFields {
            rpd: 5,
            ..LimitFields::default()
        };
        assert_eq!(plain.check().unwrap().day, Some(DayRule::Rolling(DAY_MS)));
        let midnight = LimitFields {
            tpd: 5,
            day_reset: Some("midnight".into()),
            utc_offset_minutes: -480,
            ..LimitFields::default()
        };
        assert_eq!(
            midnight.check().unwrap().day,
            Some(DayRule::Calendar(
                Period::new(PeriodKind::Day, -480).unwrap()
            ))
        );
        let budget = LimitFields {
            budget_usd: Some(12.5),
            budget_period: Some("24h".into()),
            ..LimitFields::default()
        };
        assert_eq!(
            budget.check().unwrap().budget,
            Some(Budget {
                micro_usd: 12_500_000,
                period: BudgetPeriod::Rolling(DAY_MS)
            })
        );
        let monthly = LimitFields {
            budget_usd: Some(1.0),
            ..LimitFields::default()
        };
        assert!(matches!(
            monthly.check().unwrap().budget.unwrap().period,
            BudgetPeriod::Calendar(Period {
                kind: PeriodKind::Month,
                ..
            })
        ));
        for bad in [
            LimitFields {
                rpd: 1,
                day_reset: Some("noon".into()),
                ..LimitFields::default()
            },
            LimitFields {
                rpd: 1,
                day_window_ms: Some(61),
                ..LimitFields::default()
            },
            LimitFields {
                budget_usd: Some(-1.0),
                ..LimitFields::default()
            },
            LimitFields {
                budget_usd: Some(f64::NAN),
                ..LimitFields::default()
            },
            LimitFields {
                budget_usd: Some(1.0),
                budget_period: Some("fortnight".into()),
                ..LimitFields::default()
            },
            LimitFields {
                budget_period: Some("day".into()),
                ..LimitFields::default()
            },
            LimitFields {
                budget_usd: Some(1.0),
                budget_period: Some("day".into()),
                utc_offset_minutes: 1440,
                ..LimitFields::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
