//! Standard 5-field cron expressions in a named time zone, with Vixie cron's DST rules.
//!
//! Input: `minute hour day-of-month month day-of-week` (day-of-week 0–7, Sunday = 0 or 7,
//! names allowed), or `@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`,
//! `@yearly`/`@annually`. The `cron` crate wants a seconds field first and counts Sunday as 1
//! (1–7): [`normalize`] adds `0` seconds and shifts numeric days of the week. When both
//! day-of-month and day-of-week are restricted, a time matches if either does (as in Vixie
//! cron and POSIX `crontab`).
//!
//! Times are matched on the local wall clock of the zone. Across DST changes
//! (Vixie cron 3/4, `cron.c`, "time zone changes"):
//! * a *fixed-time* job (minute and hour fields do not start with `*`), e.g. `30 2 * * *`:
//!   a wall time skipped by the spring-forward gap runs once, at the first instant after the
//!   gap; a wall time repeated at fall-back runs once, at its first occurrence;
//! * a *wildcard* job (minute or hour starts with `*`), e.g. `0 * * * *`: runs at every real
//!   matching instant, so an hourly job runs once per real hour (23 times on the spring day,
//!   25 on the autumn day).

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};

/// A parsed expression bound to a zone.
#[derive(Debug, Clone)]
pub struct CronExpr {
    source: String,
    tz: Tz,
    /// One schedule, or two when day-of-month and day-of-week are both restricted (OR).
    schedules: Vec<cron::Schedule>,
    wildcard: bool,
}

fn bad(expr: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!(
        "cron expression {expr:?}: {why} (expected 5 fields: minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\")"
    ))
}

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`). Errors: [`Error::InvalidInput`].
pub fn parse_tz(name: &str) -> Result<Tz> {
    Tz::from_str(name).map_err(|_| {
        Error::InvalidInput(format!(
            "unknown time zone {name:?}: give an IANA name such as UTC or Europe/Berlin"
        ))
    })
}

fn shift_dow_value(v: u32) -> u32 {
    if v == 7 {
        1
    } else {
        v + 1
    }
}

/// Rewrites a standard day-of-week field (0–7, Sunday 0 or 7) for the `cron` crate (1–7,
/// Sunday 1). Numeric ranges and steps are expanded into lists; `*`, `*/n` and names are
/// the same in both notations.
fn normalize_dow(field: &str, expr: &str) -> Result<String> {
    let mut out: Vec<String> = Vec::new();
    for item in field.split(',') {
        if item.is_empty() {
            return Err(bad(expr, "empty list item in day-of-week"));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| bad(expr, format!("bad step {s:?}")))?,
                ),
            ),
            None => (item, None),
        };
        if range == "*" || range.chars().any(|c| c.is_ascii_alphabetic()) {
            out.push(item.to_string());
            continue;
        }
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, if step.is_some() { "7" } else { range }),
        };
        let num = |s: &str| -> Result<u32> {
            let v: u32 = s
                .parse()
                .map_err(|_| bad(expr, format!("bad day of week {s:?}")))?;
            if v > 7 {
                return Err(bad(expr, format!("day of week {v} is not within 0-7")));
            }
            Ok(v)
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(bad(expr, format!("range {range:?} runs backwards")));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(bad(expr, "step 0"));
        }
        let mut v = a;
        while v <= b {
            let s = shift_dow_value(v).to_string();
            if !out.contains(&s) {
                out.push(s);
            }
            v += step;
        }
    }
    Ok(out.join(","))
}

/// Turns a standard 5-field expression (or `@daily` …) into the `cron` crate's 6 fields
/// (seconds first, Sunday = 1). Errors: [`Error::InvalidInput`] naming the expression.
pub fn normalize(expr: &str) -> Result<String> {
    Ok(normalize_parts(expr)?.join(" "))
}

fn normalize_parts(expr: &str) -> Result<Vec<String>> {
    let e = expr.trim();
    let e = match e {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with('@') => return Err(bad(expr, "unknown macro")),
        other => other,
    };
    let f: Vec<&str> = e.split_whitespace().collect();
    if f.len() != 5 {
        return Err(bad(expr, format!("{} fields", f.len())));
    }
    Ok(vec![
        "0".into(),
        f[0].into(),
        f[1].into(),
        f[2].into(),
        f[3].into(),
        normalize_dow(f[4], expr)?,
    ])
}

impl CronExpr {
    /// Parses `expr` (5 fields) for zone `tz`. Errors: [`Error::InvalidInput`].
    pub fn parse(expr: &str, tz: Tz) -> Result<CronExpr> {
        let parts = normalize_parts(expr)?;
        let restricted = |s: &str| s != "*" && s != "?";
        let mut variants = vec![parts.clone()];
        if restricted(&parts[3]) && restricted(&parts[5]) {
            let mut a = parts.clone();
            a[5] = "*".into();
            let mut b = parts.clone();
            b[3] = "*".into();
            variants = vec![a, b];
        }
        let schedules = variants
            .iter()
            .map(|v| cron::Schedule::from_str(&v.join(" ")).map_err(|e| bad(expr, e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(CronExpr {
            source: expr.trim().to_string(),
            tz,
            schedules,
            wildcard: parts[1].starts_with('*') || parts[2].starts_with('*'),
        })
    }

    /// Parses with a zone name. Errors: [`Error::InvalidInput`].
    pub fn parse_in(expr: &str, tz: &str) -> Result<CronExpr> {
        CronExpr::parse(expr, parse_tz(tz)?)
    }

    /// The expression as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first run strictly after `after`, following the DST rules in the module docs.
    /// None when the expression never matches again (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|s| self.next_for(s, after))
            .min()
    }

    /// Instants of local wall time `n`, per the DST rules.
    fn instants(&self, n: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&n) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                if self.wildcard {
                    vec![a.with_timezone(&Utc), b.with_timezone(&Utc)]
                } else {
                    vec![a.with_timezone(&Utc)]
                }
            }
            LocalResult::None => {
                if self.wildcard {
                    return vec![];
                }
                // The first wall-clock minute after the gap.
                (1..=24 * 60)
                    .find_map(|m| {
                        self.tz
                            .from_local_datetime(&(n + Duration::minutes(m)))
                            .earliest()
                    })
                    .map(|t| {
                        // Whole minutes: the gap ends at a transition, a minute boundary.
                        let t = t.with_timezone(&Utc);
                        t - Duration::seconds(t.timestamp().rem_euclid(60))
                    })
                    .into_iter()
                    .collect()
            }
        }
    }

    fn next_for(&self, s: &cron::Schedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Wall times map to instants almost monotonically; around a DST change an earlier wall
        // time can map to a later instant. Start 3 hours of wall time early, and once a
        // candidate is found keep looking 3 more hours of wall time for an earlier instant.
        let local = after.with_timezone(&self.tz).naive_local();
        let start = Utc.from_utc_datetime(&(local - Duration::hours(3)));
        let mut best: Option<(DateTime<Utc>, NaiveDateTime)> = None;
        for (i, cand) in s.after(&start).enumerate() {
            let n = cand.naive_utc();
            if let Some((_, found_at)) = best {
                if n > found_at + Duration::hours(3) {
                    break;
                }
            }
            if i > 100_000 {
                break;
            }
            for t in self.instants(n) {
                if t > after && best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, best.map(|(_, f)| f).unwrap_or(n)));
                }
            }
        }
        best.map(|(t, _)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn normalizes_five_fields() {
        assert_eq!(normalize("30 2 * * *").unwrap(), "0 30 2 * * *");
        assert_eq!(normalize("0 0 * * 0").unwrap(), "0 0 0 * * 1");
        assert_eq!(normalize("0 0 * * 7").unwrap(), "0 0 0 * * 1");
        assert_eq!(normalize("0 0 * * 1-5").unwrap(), "0 0 0 * * 2,3,4,5,6");
        assert_eq!(normalize("0 0 * * 5-7").unwrap(), "0 0 0 * * 6,7,1");
        assert_eq!(normalize("0 0 * * */2").unwrap(), "0 0 0 * * */2");
        assert_eq!(normalize("@daily").unwrap(), "0 0 0 * * *");
        assert!(normalize("* * * *").is_err());
        assert!(normalize("0 0 * * 8").is_err());
        assert!(CronExpr::parse_in("61 * * * *", "UTC").is_err());
        assert!(CronExpr::parse_in("0 * * * *", "Mars/Base").is_err());
    }

    #[test]
    fn sunday_is_sunday() {
        let c = CronExpr::parse_in("0 12 * * 0", "UTC").unwrap();
        // 2025-06-01 is a Sunday.
        assert_eq!(
            c.next_after(utc("2025-05-28T00:00:00Z")),
            Some(utc("2025-06-01T12:00:00Z"))
        );
        let c = CronExpr::parse_in("0 12 * * 1-5", "UTC").unwrap();
        assert_eq!(
            c.next_after(utc("2025-05-31T00:00:00Z")),
            Some(utc("2025-06-02T12:00:00Z"))
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // The 15th or any Monday: 2025-06-02 (Monday) comes before the 15th.
        let c = CronExpr::parse_in("0 0 15 * 1", "UTC").unwrap();
        assert_eq!(
            c.next_after(utc("2025-06-01T00:00:00Z")),
            Some(utc("2025-06-02T00:00:00Z"))
        );
    }

    #[test]
    fn berlin_dst_fixed_and_hourly() {
        let daily = CronExpr::parse_in("30 2 * * *", "Europe/Berlin").unwrap();
        // Spring forward 2025-03-30 02:00 -> 03:00: 02:30 runs at 03:00 CEST = 01:00 UTC.
        assert_eq!(
            daily.next_after(utc("2025-03-29T12:00:00Z")),
            Some(utc("2025-03-30T01:00:00Z"))
        );
        assert_eq!(
            daily.next_after(utc("2025-03-30T01:00:00Z")),
            Some(utc("2025-03-31T00:30:00Z"))
        );
        // Fall back 2025-10-26 03:00 -> 02:00: 02:30 runs once, at 02:30 CEST = 00:30 UTC.
        assert_eq!(
            daily.next_after(utc("2025-10-25T12:00:00Z")),
            Some(utc("2025-10-26T00:30:00Z"))
        );
        assert_eq!(
            daily.next_after(utc("2025-10-26T00:30:00Z")),
            Some(utc("2025-10-27T01:30:00Z"))
        );
        let hourly = CronExpr::parse_in("0 * * * *", "Europe/Berlin").unwrap();
        let count = |from: &str, to: &str| {
            let (mut t, end) = (utc(from), utc(to));
            let mut n = 0;
            while let Some(x) = hourly.next_after(t) {
                if x >= end {
                    break;
                }
                n += 1;
                t = x;
            }
            n
        };
        // Local days: 2025-03-30 has 23 real hours, 2025-10-26 has 25.
        assert_eq!(count("2025-03-29T22:59:00Z", "2025-03-30T22:00:00Z"), 23);
        assert_eq!(count("2025-10-25T21:59:00Z", "2025-10-26T23:00:00Z"), 25);
    }
}
