//! Retention: which snapshots to keep (`forget`).
//!
//! Snapshots are grouped by host, target kind and paths; each group is thinned on its own.
//! Within a group, newest first, `keep_last` keeps the N newest, and each `keep_<period>`
//! keeps the newest snapshot of each of the last N calendar periods that have one (restic's
//! semantics). Periods are calendar buckets in one stated time zone (IANA name, default UTC):
//! a day is a local date, so DST days are 23 or 25 hours long and still one bucket; an hour is
//! a local hour *with its UTC offset*, so the repeated hour at the end of DST is two buckets.
//! `keep_within` keeps snapshots within a duration of the group's newest one.
//! A snapshot whose `retention_until` (PRD, from `--retention-days`) is in the future is always
//! kept. With no `keep_*` rule at all, only snapshots whose `retention_until` has passed are
//! forgotten.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::repository::snapshot::Snapshot;
use crate::repository::Repository;

/// Keep rules. `None` means the rule is not used.
#[derive(Debug, Clone, Default)]
pub struct RetentionPolicy {
    /// Keep the N newest.
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last N hours.
    pub keep_hourly: Option<u32>,
    /// … days.
    pub keep_daily: Option<u32>,
    /// … ISO weeks.
    pub keep_weekly: Option<u32>,
    /// … months.
    pub keep_monthly: Option<u32>,
    /// … years.
    pub keep_yearly: Option<u32>,
    /// Keep everything within this duration of the newest snapshot.
    pub keep_within: Option<Duration>,
    /// Zone of the calendar buckets (default UTC).
    pub timezone: Option<chrono_tz::Tz>,
}

impl RetentionPolicy {
    /// True when no keep rule is set.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
    }
}

/// Parses a duration such as `7d`, `2w`, `1y6m`, `36h` (y = 365 days, m = 30 days).
///
/// Errors: [`Error::InvalidInput`] naming the text.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::InvalidInput(format!("duration {s:?}: expected e.g. 7d, 2w, 1y6m, 36h"));
    let mut total = Duration::zero();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        if n > 100_000 {
            return Err(Error::InvalidInput(format!("duration {s:?} is too long")));
        }
        total += match c {
            'y' => Duration::days(365 * n),
            'm' => Duration::days(30 * n),
            'w' => Duration::weeks(n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// The decision for one snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Full snapshot id.
    pub id: String,
    /// Snapshot time (UTC).
    pub time: DateTime<Utc>,
    /// Whether it is kept.
    pub keep: bool,
    /// Rules that keep it (`last`, `daily`, `retention_until`, …).
    pub reasons: Vec<String>,
}

/// Applies `policy` to `snaps` at time `now`. Pure: nothing is deleted.
pub fn apply_policy(
    snaps: &[Snapshot],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let tz = policy.timezone.unwrap_or(chrono_tz::UTC);
    let mut groups: BTreeMap<(String, String, Vec<String>), Vec<&Snapshot>> = BTreeMap::new();
    for s in snaps {
        groups
            .entry((s.hostname.clone(), s.target_kind.clone(), s.paths.clone()))
            .or_default()
            .push(s);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        let newest = group[0].time;
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); group.len()];
        if let Some(n) = policy.keep_last {
            for r in reasons.iter_mut().take(n as usize) {
                r.push("last".into());
            }
        }
        type Bucket = fn(&DateTime<chrono_tz::Tz>) -> String;
        let rules: [(&str, Option<u32>, Bucket); 5] = [
            ("hourly", policy.keep_hourly, |t| {
                format!("{} {:02} {}", t.date_naive(), t.hour(), t.offset())
            }),
            ("daily", policy.keep_daily, |t| t.date_naive().to_string()),
            ("weekly", policy.keep_weekly, |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            ("monthly", policy.keep_monthly, |t| {
                format!("{}-{:02}", t.year(), t.month())
            }),
            ("yearly", policy.keep_yearly, |t| t.year().to_string()),
        ];
        for (name, count, bucket) in rules {
            let Some(mut left) = count else { continue };
            let mut last: Option<String> = None;
            for (i, s) in group.iter().enumerate() {
                if left == 0 {
                    break;
                }
                let b = bucket(&tz.from_utc_datetime(&s.time.naive_utc()));
                if last.as_ref() != Some(&b) {
                    reasons[i].push(name.into());
                    left -= 1;
                    last = Some(b);
                }
            }
        }
        if let Some(d) = policy.keep_within {
            for (i, s) in group.iter().enumerate() {
                if s.time >= newest - d {
                    reasons[i].push("within".into());
                }
            }
        }
        for (i, s) in group.iter().enumerate() {
            let mut r = std::mem::take(&mut reasons[i]);
            match s.retention_until {
                Some(until) if until > now => r.push("retention_until".into()),
                None if policy.is_empty() => r.push("no rule".into()),
                _ => {}
            }
            out.push(Decision {
                id: s.id.to_hex(),
                time: s.time,
                keep: !r.is_empty(),
                reasons: r,
            });
        }
    }
    out.sort_by_key(|a| a.time);
    out
}

/// Applies `policy` to every snapshot and deletes the manifests not kept (unless `dry_run`).
/// Data is reclaimed by [`super::prune::prune`]. Holds a shared lock (so it never runs during
/// a prune).
pub async fn forget(
    repo: &Repository,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<Vec<Decision>> {
    repo.locked(false, "forget", async {
        let snaps = repo.snapshots().await?;
        let decisions = apply_policy(&snaps, policy, Utc::now());
        if !dry_run {
            for d in decisions.iter().filter(|d| !d.keep) {
                repo.delete_snapshot(&crate::Id::parse(&d.id)?).await?;
            }
        }
        Ok(decisions)
    })
    .await
}

/// Deletes the snapshots named by `specs` (ids or unique prefixes), including damaged
/// manifests that no longer decrypt. Returns the full ids removed.
pub async fn forget_ids(repo: &Repository, specs: &[String], dry_run: bool) -> Result<Vec<String>> {
    repo.locked(false, "forget", async {
        let all = repo.snapshot_ids().await?;
        let mut out = Vec::new();
        for spec in specs {
            let s = spec.to_ascii_lowercase();
            let m: Vec<&crate::Id> = all
                .iter()
                .filter(|i| s.len() >= 4 && i.to_hex().starts_with(&s))
                .collect();
            match m.as_slice() {
                [one] => out.push(**one),
                [] => {
                    return Err(Error::SnapshotNotFound {
                        id: spec.clone(),
                        reason: "no snapshot has this id".into(),
                    })
                }
                _ => {
                    return Err(Error::SnapshotNotFound {
                        id: spec.clone(),
                        reason: "ambiguous prefix; give more digits".into(),
                    })
                }
            }
        }
        if !dry_run {
            for id in &out {
                repo.delete_snapshot(id).await?;
            }
        }
        Ok(out.iter().map(|i| i.to_hex()).collect())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::id::Id;
    use crate::repository::snapshot::{BackupType, Summary};

    fn snap(i: u8, time: DateTime<Utc>) -> Snapshot {
        Snapshot {
            id: Id([i; 32]),
            version: 1,
            time,
            utc_offset: "+00:00".into(),
            hostname: "h".into(),
            username: "u".into(),
            target_kind: "files".into(),
            targets: vec![],
            paths: vec!["/x".into()],
            tree: Id::default(),
            parent: None,
            backup_type: BackupType::Full,
            description: None,
            tags: vec![],
            retention_until: None,
            partial: false,
            errors: vec![],
            summary: Summary::default(),
            program_version: "t".into(),
            meta: Default::default(),
        }
    }

    #[test]
    fn daily_buckets_follow_the_zone_across_dst() {
        // Europe/Berlin: DST ends 2026-10-25 03:00 local. Snapshots every 6 hours over 3 days.
        let start = Utc.with_ymd_and_hms(2026, 10, 24, 0, 0, 0).unwrap();
        let snaps: Vec<Snapshot> = (0..12)
            .map(|i| snap(i, start + Duration::hours(6 * i as i64)))
            .collect();
        let p = RetentionPolicy {
            keep_daily: Some(10),
            timezone: Some(chrono_tz::Europe::Berlin),
            ..Default::default()
        };
        let kept: Vec<DateTime<Utc>> = apply_policy(&snaps, &p, start)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.time)
            .collect();
        // Local days 24, 25, 26 and 27 (the last snapshot, 2026-10-26 18:00 UTC, is 19:00 local on the 26th).
        let days: Vec<String> = kept
            .iter()
            .map(|t| {
                chrono_tz::Europe::Berlin
                    .from_utc_datetime(&t.naive_utc())
                    .date_naive()
                    .to_string()
            })
            .collect();
        assert_eq!(days, vec!["2026-10-24", "2026-10-25", "2026-10-26"]);
        // The newest of each local day is kept: 2026-10-24 18:00 UTC is 20:00 local (CEST).
        assert_eq!(
            kept[0],
            Utc.with_ymd_and_hms(2026, 10, 24, 18, 0, 0).unwrap()
        );
    }

    #[test]
    fn hourly_counts_the_repeated_hour_twice() {
        // 2026-10-25 00:30 and 01:30 UTC are both 02:30 local in Berlin (CEST then CET).
        let a = snap(1, Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap());
        let b = snap(2, Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap());
        let p = RetentionPolicy {
            keep_hourly: Some(5),
            timezone: Some(chrono_tz::Europe::Berlin),
            ..Default::default()
        };
        assert!(apply_policy(&[a, b], &p, Utc::now()).iter().all(|d| d.keep));
    }

    #[test]
    fn last_and_retention_until() {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let mut s: Vec<Snapshot> = (0..5)
            .map(|i| snap(i, now - Duration::days(10 - i as i64)))
            .collect();
        s[0].retention_until = Some(now + Duration::days(1));
        let p = RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        };
        let keep: Vec<bool> = apply_policy(&s, &p, now).iter().map(|d| d.keep).collect();
        assert_eq!(keep, vec![true, false, false, true, true]);
        // No rule: only expired retention is forgotten.
        s[1].retention_until = Some(now - Duration::days(1));
        let keep: Vec<bool> = apply_policy(&s, &RetentionPolicy::default(), now)
            .iter()
            .map(|d| d.keep)
            .collect();
        assert_eq!(keep, vec![true, false, true, true, true]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1w2d").unwrap(), Duration::days(9));
        assert_eq!(parse_duration("36h").unwrap(), Duration::hours(36));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("3x").is_err());
    }
}
