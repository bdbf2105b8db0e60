//! When a named schedule is due: cron expressions (5 fields, or 6 with
//! seconds first, in a time zone), fixed intervals, and one-off times.
//!
//! A cron field may be `H`, `H/n`, `H(a-b)` or `H(a-b)/n`: a value hashed from
//! the schedule's name (as Jenkins does), so that many schedules written
//! `H * * * *` spread over the hour instead of all firing at minute 0. The same
//! name always gets the same value.
//!
//! Catch-up rule: a schedule fires once for everything it missed (while the
//! service was down, or between ticks), then waits for its first due time after
//! now; it never fires once per missed tick.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Year};
use croner::Cron;
use sha2::{Digest, Sha256};

use crate::model::Millis;
pub use crate::model::Spec;

/// Why a schedule's timing was refused; `field` names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

fn error(field: &'static str, message: impl Into<String>) -> SpecError {
    SpecError {
        field,
        message: message.into(),
    }
}

/// A checked spec, ready to say when it is next due.
#[derive(Debug, Clone)]
pub enum Timing {
    Cron { cron: Box<Cron>, tz: Tz },
    Every { ms: u64 },
    At { at: Millis },
}

impl Timing {
    /// Checks `spec` for the schedule called `name` (which seeds `H`).
    pub fn new(name: &str, spec: &Spec) -> Result<Self, SpecError> {
        match spec {
            Spec::Cron { expr, timezone } => {
                let tz = Tz::from_str(timezone).map_err(|_| {
                    error(
                        "timezone",
                        format!(
                            "`{timezone}` is not an IANA time zone (such as Europe/Paris or UTC)"
                        ),
                    )
                })?;
                let expanded = expand_h(name, expr)?;
                let cron = CronParser::builder()
                    .year(Year::Disallowed)
                    .build()
                    .parse(&expanded)
                    .map_err(|e| {
                        error("cron", format!("`{expr}` is not a cron expression: {e}"))
                    })?;
                Ok(Timing::Cron {
                    cron: Box::new(cron),
                    tz,
                })
            }
            Spec::Every { secs } if *secs == 0 => Err(error("every", "must be at least 1 second")),
            Spec::Every { secs } => Ok(Timing::Every { ms: secs * 1000 }),
            Spec::At { at } => Ok(Timing::At { at: *at }),
        }
    }

    /// The first due time strictly after `after`; `None` when there is none
    /// (a one-off in the past, or a cron that never matches again).
    pub fn next_after(&self, after: Millis, anchor: Millis) -> Option<Millis> {
        match self {
            Timing::At { at } => (*at > after).then_some(*at),
            Timing::Every { ms } => {
                // Due at anchor + k*ms: the first such time after `after`.
                let k = after.since(anchor) / ms + 1;
                Some(anchor.plus_millis(k * ms))
            }
            Timing::Cron { cron, tz } => {
                let utc: DateTime<Utc> = DateTime::from_timestamp_millis(after.0 as i64)?;
                let local = tz.from_utc_datetime(&utc.naive_utc());
                let next = cron.find_next_occurrence(&local, false).ok()?;
                let ms = next.timestamp_millis();
                (ms >= 0).then_some(Millis(ms as u64))
            }
        }
    }
}

/// Replaces each `H` form in a cron expression by a value hashed from the
/// schedule's name, within the field's range.
pub fn expand_h(name: &str, expr: &str) -> Result<String, SpecError> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    // Ranges of (seconds,) minutes, hours, day of month (to 28: every month
    // has it), month, day of week.
    let ranges: &[(u64, u64)] = match fields.len() {
        5 => &[(0, 59), (0, 23), (1, 28), (1, 12), (0, 6)],
        6 => &[(0, 59), (0, 59), (0, 23), (1, 28), (1, 12), (0, 6)],
        n => {
            return Err(error(
                "cron",
                format!(
                    "`{expr}` has {n} fields; a cron expression has 5, or 6 with seconds first"
                ),
            ))
        }
    };
    let mut out = Vec::with_capacity(fields.len());
    for (i, (field, &(lo, hi))) in fields.iter().zip(ranges).enumerate() {
        out.push(if field.to_ascii_uppercase().starts_with('H') {
            expand_field(name, i, field, lo, hi)?
        } else {
            (*field).to_owned()
        });
    }
    Ok(out.join(" "))
}

fn expand_field(
    name: &str,
    index: usize,
    field: &str,
    lo: u64,
    hi: u64,
) -> Result<String, SpecError> {
    let bad = || {
        error(
            "cron",
            format!("`{field}` is not an H field (H, H/n, H(a-b) or H(a-b)/n)"),
        )
    };
    let rest = &field[1..];
    let (range, step) = match rest.split_once('/') {
        Some((r, s)) => (r, Some(s.parse::<u64>().map_err(|_| bad())?)),
        None => (rest, None),
    };
    let (lo, hi) = if range.is_empty() {
        (lo, hi)
    } else {
        let inner = range
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?;
        let (a, b) = inner.split_once('-').ok_or_else(bad)?;
        let (a, b) = (
            a.parse::<u64>().map_err(|_| bad())?,
            b.parse::<u64>().map_err(|_| bad())?,
        );
        if a > b || a < lo || b > hi {
            return Err(error(
                "cron",
                format!("`{field}`: the range must lie within {lo}-{hi}"),
            ));
        }
        (a, b)
    };
    let hash = {
        let digest = Sha256::digest(format!("{name}\0{index}").as_bytes());
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    };
    Ok(match step {
        Some(0) => return Err(bad()),
        Some(step) => format!("{}-{hi}/{step}", lo + hash % step.min(hi - lo + 1)),
        None => (lo + hash % (hi - lo + 1)).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_is_stable_per_name_and_within_range() {
        let a = expand_h("nightly-build", "H H * * *").unwrap();
        assert_eq!(a, expand_h("nightly-build", "H H * * *").unwrap());
        let minutes: std::collections::HashSet<String> = (0..40)
            .map(|i| expand_h(&format!("job-{i}"), "H * * * *").unwrap())
            .collect();
        assert!(
            minutes.len() > 10,
            "names spread over the hour: {minutes:?}"
        );
        for m in &minutes {
            let minute: u64 = m.split(' ').next().unwrap().parse().unwrap();
            assert!(minute < 60);
        }
        let ranged = expand_h("x", "H(10-19) * * * *").unwrap();
        let v: u64 = ranged.split(' ').next().unwrap().parse().unwrap();
        assert!((10..=19).contains(&v));
        let stepped = expand_h("x", "H/15 * * * *").unwrap();
        assert!(stepped.ends_with("-59/15 * * * *"), "{stepped}");
        assert!(
            expand_h("x", "0 H * * * *").unwrap().starts_with("0 "),
            "6 fields: seconds first"
        );
    }

    #[test]
    fn bad_expressions_are_refused() {
        assert_eq!(expand_h("x", "* * *").unwrap_err().field, "cron");
        assert!(expand_h("x", "H(50-70) * * * *").is_err());
        assert!(expand_h("x", "Hx * * * *").is_err());
        assert!(expand_h("x", "H/0 * * * *").is_err());
        let spec = |e: &str, tz: &str| Spec::Cron {
            expr: e.into(),
            timezone: tz.into(),
        };
        assert_eq!(
            Timing::new("x", &spec("61 * * * *", "UTC"))
                .unwrap_err()
                .field,
            "cron"
        );
        assert_eq!(
            Timing::new("x", &spec("* * * * *", "Mars/Olympus"))
                .unwrap_err()
                .field,
            "timezone"
        );
        assert_eq!(
            Timing::new("x", &Spec::Every { secs: 0 })
                .unwrap_err()
                .field,
            "every"
        );
    }

    #[test]
    fn next_due_times() {
        let t =
            |s: &str| Millis(DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64);
        let cron = Timing::new(
            "x",
            &Spec::Cron {
                expr: "30 9 * * *".into(),
                timezone: "Europe/Paris".into(),
            },
        )
        .unwrap();
        // 09:30 in Paris in winter is 08:30 UTC.
        assert_eq!(
            cron.next_after(t("2026-01-05T07:00:00Z"), Millis(0)),
            Some(t("2026-01-05T08:30:00Z"))
        );
        assert_eq!(
            cron.next_after(t("2026-01-05T08:30:00Z"), Millis(0)),
            Some(t("2026-01-06T08:30:00Z"))
        );
        let seconds = Timing::new(
            "x",
            &Spec::Cron {
                expr: "*/10 * * * * *".into(),
                timezone: "UTC".into(),
            },
        )
        .unwrap();
        assert_eq!(
            seconds.next_after(t("2026-01-05T07:00:01Z"), Millis(0)),
            Some(t("2026-01-05T07:00:10Z"))
        );
        let every = Timing::new("x", &Spec::Every { secs: 60 }).unwrap();
        assert_eq!(
            every.next_after(Millis(125_000), Millis(5_000)),
            Some(Millis(185_000))
        );
        let at = Timing::new("x", &Spec::At { at: Millis(9_000) }).unwrap();
        assert_eq!(at.next_after(Millis(8_000), Millis(0)), Some(Millis(9_000)));
        assert_eq!(at.next_after(Millis(9_000), Millis(0)), None);
    }
}
